"""A service on simulated hosts (issue 13): 50 instances, scaled to 80, then back to 20.

A real `cellplane server` process (SQLite, then PostgreSQL; no agent, no engine) and 10 simulated hosts
(`cellplane.testing.simhosts`, the agent protocol over HTTP). The service's cells are admitted
and placed in one batch per change; they must all run, spread over the hosts, and the scale-down
must keep the lowest ordinals and remove the others for good (the hosts confirm the removals).
No podman is used.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from cellplane.client import Client
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.postgres import PostgresServer, find_bindir
from cellplane.testing.simhosts import SimHosts, SimSpec
from cellplane.testing.waits import finish, wait_for

pytestmark = pytest.mark.integration

HOSTS = 10
PROJECT = "svc"
TEMPLATE = {"image": "busybox", "cpu": 0.01, "memory_mb": 16, "command": ["sleep", "3600"]}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            url = stack.enter_context(_postgres())
        yield stack.enter_context(_deployment(url))


@contextlib.contextmanager
def _postgres() -> Iterator[str]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries not found; CI must install them")
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    pg = PostgresServer(bindir)
    try:
        pg.start()
        yield pg.create_database("cellplane")
    finally:
        pg.stop()


@contextlib.contextmanager
def _deployment(database_url: str | None) -> Iterator[Deployment]:
    d = Deployment(database_url=database_url)
    try:
        d.start_server()
        with d.client() as c:
            c.upload_image("busybox", build_busybox_archive(d.data_dir / "images"))
            c.create_project(PROJECT)
        yield d
    finally:
        d.close()


def _settled(c: Client, name: str, task: dict[str, Any], count: int) -> dict[str, Any]:
    """The service once its task completed: READY, `count` cells RUNNING, the removed ones gone."""
    done = finish(c, task["id"], 60)
    assert done["state"] == "COMPLETED", done

    def whole() -> dict[str, Any] | None:
        view = c.get_service(PROJECT, name)
        cells = view["cells"]
        ok = len(cells) == count and all(x["state"] == "RUNNING" for x in cells)
        return view if ok and view["state"] == "READY" else None

    view = wait_for(whole, 30, f"{count} cells RUNNING and no other", interval=0.3)
    assert view["ready"] == count and view["instances"] == count
    return view


def test_a_service_of_fifty_scales_to_eighty_and_back_to_twenty(server: Deployment) -> None:
    try:
        _scale_fifty_eighty_twenty(server)
    except Exception as e:  # the server's side of it: an HTTP 500 names no cause
        raise AssertionError(f"{e!r}\nserver log:\n{server.log_tail('server.log', 8000)}") from e


def _scale_fifty_eighty_twenty(server: Deployment) -> None:
    spec = SimSpec(
        server=server.url,
        join_token=server.join_file.read_text().strip(),
        count=HOSTS,
        prefix="simsvc",
    )
    with SimHosts(spec) as sim, server.client() as c:
        view = _settled(c, "web", c.create_service(PROJECT, "web", TEMPLATE, 50), 50)
        names = sorted(x["name"] for x in view["cells"])
        assert names == sorted(f"web-{i}" for i in range(1, 51))
        # Spread: equal hosts, the soft anti-affinity: 5 cells on each.
        assert Counter(x["host_id"] for x in view["cells"]) == Counter(
            {h["id"]: 5 for h in c.list_hosts(limit=100)["items"]}
        )

        view = _settled(c, "web", c.scale_service(PROJECT, "web", 80), 80)
        assert sorted(x["name"] for x in view["cells"]) == sorted(f"web-{i}" for i in range(1, 81))
        assert sorted(Counter(x["host_id"] for x in view["cells"]).values()) == [8] * HOSTS

        view = _settled(c, "web", c.scale_service(PROJECT, "web", 20), 20)
        # The highest ordinals went; the cells that stayed are the ones that ran before.
        assert sorted(x["name"] for x in view["cells"]) == sorted(f"web-{i}" for i in range(1, 21))
        cells = list(c.iter_cells(PROJECT, labels={"service": "web"}))
        assert sorted(x["name"] for x in cells) == sorted(f"web-{i}" for i in range(1, 21))
        assert all(x["container_id"] for x in cells)
    counters = sim.counters
    assert counters["errors"] == 0, counters.get("last_error")
    # The 60 removed cells are gone from their hosts too.
    assert counters["running"] == 20, counters
