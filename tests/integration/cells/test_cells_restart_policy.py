"""Restart policies, and reconciliation of containers changed behind Cellplane's back."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cellplane.client import TERMINAL_TASK_STATES, Client
from cellplane.drivers.podman import PodmanDriver

from .conftest import Cells, event_types, finish, wait_for


@pytest.mark.integration
def test_policy_always_restarts_a_killed_container(
    cells: Cells, client: Client, engine: PodmanDriver
) -> None:
    cell = cells.run("always", restart={"policy": "always"})
    assert cell["restart"]["policy"] == "always"
    assert cell["restarts"] == 0
    before = engine.inspect(cell["container_id"])
    assert before.running

    engine.kill(cell["container_id"])

    def restarted() -> dict[str, Any] | None:
        c = client.get_cell(cell["id"])
        return c if c["restarts"] >= 1 and c["state"] == "RUNNING" else None

    after = wait_for(restarted, 30, what="restart after kill")
    assert "restarted" in event_types(after), event_types(after)
    assert after["container_id"] == cell["container_id"]  # restarted, not recreated
    info = engine.inspect(cell["container_id"])
    assert info.running and info.started_at != before.started_at, (before, info)


@pytest.mark.integration
def test_removed_container_is_recreated(cells: Cells, client: Client, engine: PodmanDriver) -> None:
    """Every removal behind Cellplane's back is repaired (three rounds: the agent must not mistake
    a force-removed container, briefly seen stopped, for one that exited by itself)."""
    cell = cells.run("recreate")
    old = cell["container_id"]
    for round_ in range(3):
        engine.remove(old, force=True)
        last: dict[str, Any] = {}

        def recreated(old: str = old, last: dict[str, Any] = last) -> dict[str, Any] | None:
            c = client.get_cell(cell["id"])
            last.update(c)
            ok = c["state"] == "RUNNING" and c["container_id"] not in (None, old)
            return c if ok and event_types(c)[-2:] == ["recreated", "started"] else None

        try:
            after = wait_for(recreated, 20, what="recreated container")
        except AssertionError:
            events = [(e["type"], e["message"]) for e in last["events"]]
            engine_view = [
                (i.id[:12], i.state) for i in engine.list({"cellplane.cell": cell["id"]})
            ]
            raise AssertionError(
                f"round {round_}: not recreated in 20 s: state {last['state']}, "
                f"exit_code {last['exit_code']}, container {last['container_id']}, "
                f"events {events[-4:]}, engine {engine_view}"
            ) from None
        containers = engine.list({"cellplane.cell": cell["id"]})
        assert [c.id for c in containers] == [after["container_id"]], containers
        assert containers[0].running
        assert after["address"], after
        old = after["container_id"]


@pytest.mark.integration
def test_policy_on_failure_gives_up_after_max_retries(cells: Cells, client: Client) -> None:
    cell_id, task = cells.submit(
        "onfail", ["sh", "-c", "exit 3"], restart={"policy": "on-failure", "max_retries": 2}
    )

    def settled() -> dict[str, Any] | None:
        c = client.get_cell(cell_id)
        return c if c["state"] == "EXITED" and c["restarts"] == 2 else None

    cell = wait_for(settled, 60, what="EXITED after 2 restarts")
    assert cell["exit_code"] == 3, cell
    assert event_types(cell).count("restarted") == 2, event_types(cell)
    # No third attempt (backoff would have allowed one within a few seconds).
    time.sleep(4)
    cell = client.get_cell(cell_id)
    assert (cell["state"], cell["exit_code"], cell["restarts"]) == ("EXITED", 3, 2), cell
    assert finish(client, task["id"], 30)["state"] in TERMINAL_TASK_STATES


@pytest.mark.integration
def test_policy_never_leaves_an_exited_cell_alone(
    cells: Cells, client: Client, engine: PodmanDriver
) -> None:
    cell_id, task = cells.submit("never", ["sh", "-c", "echo done; exit 0"])

    def exited() -> dict[str, Any] | None:
        c = client.get_cell(cell_id)
        return c if c["state"] == "EXITED" else None

    cell = wait_for(exited, 60, what="EXITED")
    assert cell["restart"]["policy"] == "never"
    assert cell["exit_code"] == 0, cell
    time.sleep(3)
    cell = client.get_cell(cell_id)
    assert (cell["state"], cell["exit_code"], cell["restarts"]) == ("EXITED", 0, 0), cell
    assert "restarted" not in event_types(cell)
    [info] = engine.list({"cellplane.cell": cell_id})
    assert not info.running and info.exit_code == 0, info
    # The create task must not stay open forever because the cell finished quickly.
    done = finish(client, task["id"], 30)
    assert done["state"] in TERMINAL_TASK_STATES, done
