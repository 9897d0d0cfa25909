"""Simulated hosts against a real server: 20 agents speaking the agent protocol over HTTP.

A real `cellplane server` process (SQLite, no agent, no engine) and `cellplane.testing.simhosts`
(two processes); 200 cells created through the API must all be RUNNING, spread over the hosts,
their CREATE_CELL tasks completed from the simulated agents' reports. No podman is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.simhosts import SimHosts, SimSpec
from cellplane.testing.waits import wait_for

pytestmark = pytest.mark.integration

HOSTS = 20
CELLS = 200


@pytest.fixture(scope="module")
def server() -> Iterator[Deployment]:
    d = Deployment()
    try:
        d.start_server()
        with d.client() as c:
            c.upload_image("busybox", build_busybox_archive(d.data_dir / "images"))
            c.create_project("scale")
        yield d
    finally:
        d.close()


def test_simulated_hosts_run_every_cell_spread_over_them(server: Deployment) -> None:
    spec = SimSpec(
        server=server.url,
        join_token=server.join_file.read_text().strip(),
        count=HOSTS,
        prefix="simt",
    )
    with SimHosts(spec) as sim, server.client() as c:
        hosts = {h["name"]: h for h in c.list_hosts(limit=500)["items"]}
        assert sorted(hosts) == [f"simt-{i:05d}" for i in range(HOSTS)]
        assert {h["state"] for h in hosts.values()} == {"READY"}

        def create(i: int) -> str:
            body: dict[str, Any] = {"cpu": 0.01, "memory_mb": 16, "command": ["sleep", "1"]}
            return str(c.create_cell("scale", f"c-{i:03d}", "busybox", **body)["id"])

        with ThreadPoolExecutor(8) as pool:
            tasks = list(pool.map(create, range(CELLS)))

        def all_running() -> list[dict[str, Any]] | None:
            cells = list(c.iter_cells("scale"))
            running = [x for x in cells if x["state"] == "RUNNING"]
            return cells if len(running) == CELLS else None

        cells = wait_for(all_running, timeout=25, what=f"{CELLS} cells RUNNING", interval=0.5)
        per_host = Counter(x["host"] for x in cells)
        # Spread (the default policy) over equal hosts: every host has cells, none more than
        # twice its share (a host briefly SUSPECT on a loaded machine takes none for a while).
        assert set(per_host) == {h["id"] for h in hosts.values()}
        assert max(per_host.values()) <= 2 * CELLS // HOSTS, per_host
        assert all(x["container_id"] for x in cells)
        # The tasks advanced from the agents' reports, as with a real agent.
        sample = [c.get_task(t) for t in tasks[:: CELLS // 10]]
        assert {t["state"] for t in sample} == {"COMPLETED"}, sample
    counters = sim.counters
    assert counters["registered"] == HOSTS and counters["running"] == CELLS
    assert counters["errors"] == 0, counters.get("last_error")
