"""Services on a real deployment (server, agent, podman): scaling, a rolling update within its
bounds (asserted from the cell states recorded while it ran), and a cell killed behind the
platform's back (`podman rm -f`) replaced. Busybox cells of 0.05 CPU and 16 MB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cellplane.client import CellplaneError, Client
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.waits import SLEEP, finish, unique, wait_for

pytestmark = pytest.mark.integration

TEMPLATE: dict[str, Any] = {"image": "busybox", "command": SLEEP, "cpu": 0.05, "memory_mb": 16}


@pytest.fixture
def service(client: Client) -> Iterator[list[str]]:
    """Names of the services a test creates; each is deleted (with its cells) at the end."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            task = client.delete_service("default", name)
        except CellplaneError as exc:
            if exc.status != 404:
                raise
            continue
        assert finish(client, task["id"], 120)["state"] == "COMPLETED"


def _live(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in view["cells"] if c["desired_state"] != "DELETED"]


def _settled(client: Client, name: str, task: dict[str, Any], count: int) -> dict[str, Any]:
    done = finish(client, task["id"], 120)
    assert done["state"] == "COMPLETED", done
    view = client.get_service("default", name)
    assert view["state"] == "READY" and view["ready"] == count, view
    return view


def test_a_service_of_five_scales_to_eight_and_back_to_two(
    client: Client, service: list[str]
) -> None:
    name = unique("svc")
    service.append(name)
    view = _settled(client, name, client.create_service("default", name, TEMPLATE, 5), 5)
    assert sorted(c["name"] for c in _live(view)) == sorted(f"{name}-{i}" for i in range(1, 6))
    assert {c["state"] for c in _live(view)} == {"RUNNING"}
    view = _settled(client, name, client.scale_service("default", name, 8), 8)
    assert len(_live(view)) == 8
    view = _settled(client, name, client.scale_service("default", name, 2), 2)
    assert sorted(c["name"] for c in _live(view)) == [f"{name}-1", f"{name}-2"]

    def gone() -> bool:  # the removed cells' rows go once their containers are removed
        return len(client.get_service("default", name)["cells"]) == 2

    wait_for(gone, 60, "the removed cells gone")
    cells = list(client.iter_cells("default", labels={"service": name}))
    assert sorted(c["name"] for c in cells) == [f"{name}-1", f"{name}-2"]


def test_a_rolling_update_replaces_every_cell_within_its_bounds(
    client: Client, service: list[str]
) -> None:
    name = unique("roll")
    service.append(name)
    task = client.create_service("default", name, TEMPLATE, 4, max_unavailable=1, max_surge=1)
    before = {c["id"] for c in _live(_settled(client, name, task, 4))}
    task = client.update_service("default", name, {**TEMPLATE, "env": {"VERSION": "2"}})
    samples: list[tuple[int, int]] = []

    def record() -> dict[str, Any] | None:
        view = client.get_service("default", name)
        live = _live(view)
        samples.append((sum(c["state"] == "RUNNING" for c in live), len(live)))
        current = client.get_task(task["id"])
        return current if current["state"] in ("COMPLETED", "ERROR") else None

    done = wait_for(record, 120, "the rollout to finish", interval=0.05)
    assert done["state"] == "COMPLETED", done
    # Never more than max_unavailable (1) below 4 running, nor max_surge (1) above 4 alive.
    assert min(running for running, _ in samples) >= 3, samples
    assert max(alive for _, alive in samples) <= 5, samples
    assert len(samples) > 3, samples  # the rollout was seen while it ran
    view = client.get_service("default", name)
    live = _live(view)
    assert view["revision"] == 2 and {c["revision"] for c in live} == {2}
    assert len(live) == 4 and not before & {c["id"] for c in live}
    for c in live:
        assert client.get_cell(c["id"])["env"]["VERSION"] == "2"


def test_a_cell_removed_behind_our_back_is_replaced(
    client: Client, engine: PodmanDriver, service: list[str]
) -> None:
    name = unique("heal")
    service.append(name)
    view = _settled(client, name, client.create_service("default", name, TEMPLATE, 2), 2)
    victim = client.get_cell(_live(view)[0]["id"])
    engine.remove(victim["container_id"], force=True)

    def healed() -> dict[str, Any] | None:
        v = client.get_service("default", name)
        ids = {c["id"] for c in _live(v)}
        ok = v["state"] == "READY" and len(ids) == 2 and victim["id"] not in ids
        return v if ok else None

    view = wait_for(healed, 90, "the removed cell replaced")
    assert sorted(c["name"] for c in _live(view)) == [f"{name}-2", f"{name}-3"]
    with pytest.raises(CellplaneError) as refused:
        client.delete_cell(_live(view)[0]["id"])
    assert refused.value.status == 409
