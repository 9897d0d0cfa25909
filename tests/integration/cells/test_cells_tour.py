"""Tour of one cell's life on a real host: run, logs, exec, stop, start, restart, delete."""

from __future__ import annotations

import time

import pytest

from cellplane.client import Client
from cellplane.drivers.podman import PodmanDriver

from .conftest import Cells, event_types, finish, wait_for


def _stays_up(engine: PodmanDriver, container_id: str, seconds: float = 3.0) -> str:
    """The container runs and is not restarted for `seconds`; returns its start time."""
    first = wait_for(
        lambda: (i := engine.inspect(container_id)).running and i.started_at, 15, what="running"
    )
    time.sleep(seconds)
    now = engine.inspect(container_id)
    assert now.running and now.started_at == first, f"restarted again: {first} -> {now}"
    return str(first)


@pytest.mark.integration
def test_cell_lifecycle_tour(cells: Cells, client: Client, engine: PodmanDriver) -> None:
    cell = cells.run("tour", ["sh", "-c", "echo hello; echo world; sleep 600"])
    cell_id = cell["id"]

    # RUNNING with an address, a container and a history.
    assert cell["state"] == "RUNNING"
    assert cell["desired_state"] == "RUNNING"
    assert cell["address"] and cell["address"].count(".") == 3, cell
    assert cell["host"], cell
    assert cell["container_id"], cell
    types = event_types(cell)
    assert "created" in types and "started" in types, types
    [listed] = [c for c in client.iter_cells("default") if c["id"] == cell_id]
    assert listed["state"] == "RUNNING"
    containers = engine.list({"cellplane.cell": cell_id})
    assert [c.id for c in containers] == [cell["container_id"]]
    assert containers[0].running

    # Logs: the container's output, and tail cuts it.
    assert wait_for(lambda: list(client.cell_logs(cell_id)) == ["hello", "world"], 10, what="logs")
    assert list(client.cell_logs(cell_id, tail=1)) == ["world"]

    # Exec: output and exit code, non-zero propagated.
    out = client.exec_cell(cell_id, ["sh", "-c", "echo from-exec; hostname"])
    assert out["exit_code"] == 0, out
    assert out["output"].split() == ["from-exec", cell["name"]], out
    failed = client.exec_cell(cell_id, ["sh", "-c", "echo oops >&2; exit 7"])
    assert failed["exit_code"] == 7, failed
    assert "oops" in failed["output"], failed

    # Stop: this shell (PID 1, no TERM handler) ignores SIGTERM, so it is killed after the timeout.
    started = time.monotonic()
    task = finish(client, client.stop_cell(cell_id, timeout=2)["id"])
    elapsed = time.monotonic() - started
    assert task["state"] == "COMPLETED", task
    assert [s["name"] for s in task["steps"]] == ["STOP"]
    stopped = cells.wait_state(cell_id, "STOPPED")
    assert 1.5 <= elapsed < 15, f"stop of a TERM-ignoring cell took {elapsed:.1f} s with timeout 2"
    assert stopped["desired_state"] == "STOPPED"
    info = engine.inspect(cell["container_id"])
    assert not info.running, info
    assert info.exit_code == 137, info  # SIGKILL
    assert "stopped" in event_types(client.get_cell(cell_id))

    # Start again: RUNNING, and it stays up (no restart after the one asked for).
    task = finish(client, client.start_cell(cell_id)["id"])
    assert task["state"] == "COMPLETED", task
    running = cells.wait_state(cell_id, "RUNNING")
    assert running["address"], running
    [info] = engine.list({"cellplane.cell": cell_id})
    assert info.id == cell["container_id"]
    before = _stays_up(engine, info.id)

    # Restart: RUNNING again with a new start time, and again only once.
    task = finish(client, client.restart_cell(cell_id, timeout=1)["id"])
    assert task["state"] == "COMPLETED", task
    cells.wait_state(cell_id, "RUNNING")
    after = _stays_up(engine, info.id)
    assert after != before, (before, after)

    # Delete: gone from the list and from the engine.
    task = finish(client, client.delete_cell(cell_id)["id"])
    assert task["state"] == "COMPLETED", task
    assert [s["name"] for s in task["steps"]] == ["STOP", "DELETE"]
    cells.wait_gone(cell_id)
    assert all(c["id"] != cell_id for c in client.iter_cells("default"))
    assert client.find_cell("default", cell["name"]) is None
    assert (
        wait_for(lambda: engine.list({"cellplane.cell": cell_id}) == [], 15, what="engine") is True
    )


@pytest.mark.integration
def test_stop_is_graceful_for_a_cell_that_handles_term(
    cells: Cells, client: Client, engine: PodmanDriver
) -> None:
    cell = cells.run(
        "graceful", ["sh", "-c", "trap 'echo bye; exit 0' TERM; echo ready; sleep 600 & wait"]
    )
    # SIGTERM before the shell installed its trap would be ignored: wait until it is in place.
    wait_for(lambda: "ready" in list(client.cell_logs(cell["id"])), 10, what="trap installed")
    started = time.monotonic()
    # A long grace period: only a graceful exit makes this quick.
    task = finish(client, client.stop_cell(cell["id"], timeout=30)["id"])
    elapsed = time.monotonic() - started
    assert task["state"] == "COMPLETED", task
    stopped = cells.wait_state(cell["id"], "STOPPED")
    assert elapsed < 8, f"graceful stop took {elapsed:.1f} s"
    assert stopped["exit_code"] == 0, stopped
    info = engine.inspect(cell["container_id"])
    assert not info.running and info.exit_code == 0, info
    assert "bye" in list(client.cell_logs(cell["id"]))
