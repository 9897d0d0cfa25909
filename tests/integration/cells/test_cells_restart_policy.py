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
def test_removed_container_is_recreated_with_policy_always(
    cells: Cells, client: Client, engine: PodmanDriver
) -> None:
    """Every removal behind Cellplane's back is repaired (three rounds: the agent must not mistake
    a force-removed container, briefly seen stopped, for one that exited by itself)."""
    cell = cells.run("recreate", restart={"policy": "always"})
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


@pytest.mark.integration
def test_container_removed_behind_cellplanes_back_per_policy(
    cells: Cells, client: Client, engine: PodmanDriver
) -> None:
    """never: the cell ends (FAILED, an event says why), nothing recreated; on-failure: the
    removal counts against max_retries (recreated once, then it ends); always: recreated."""
    never, on_failure, always = cells.run_many(
        [
            ("rm-never", None, {}),
            ("rm-onfail", None, {"restart": {"policy": "on-failure", "max_retries": 1}}),
            ("rm-always", None, {"restart": {"policy": "always"}}),
        ]
    )
    for c in (never, on_failure, always):
        engine.remove(c["container_id"], force=True)

    def recreated(c: dict[str, Any]) -> dict[str, Any] | None:
        now = client.get_cell(c["id"])
        ok = now["state"] == "RUNNING" and now["container_id"] != c["container_id"]
        return now if ok and "recreated" in event_types(now) else None

    def ended(c: dict[str, Any]) -> dict[str, Any] | None:
        now = client.get_cell(c["id"])
        return now if now["state"] == "FAILED" and "container-removed" in event_types(now) else None

    assert wait_for(lambda: recreated(always), 30, what="always: recreated")["restarts"] == 1
    second = wait_for(lambda: recreated(on_failure), 30, what="on-failure: recreated once")
    assert second["restarts"] == 1, second
    engine.remove(second["container_id"], force=True)
    gone = wait_for(lambda: ended(on_failure), 30, what="on-failure: out of retries, ended")
    assert gone["restarts"] == 1 and "removed outside Cellplane" in gone["message"], gone
    # By now the never cell had every chance to be recreated: it ended instead.
    ended_never = wait_for(lambda: ended(never), 30, what="never: ended")
    assert "removed outside Cellplane" in ended_never["message"], ended_never
    assert "recreated" not in event_types(ended_never), event_types(ended_never)
    assert ended_never["desired_state"] == "RUNNING" and ended_never["restarts"] == 0
    for c in (never, on_failure):
        assert engine.list({"cellplane.cell": c["id"]}) == [], c["name"]
    # An ended cell runs again when its user starts it.
    finish(client, client.start_cell(never["id"])["id"], 60)
    cells.wait_state(never["id"], "RUNNING")


@pytest.mark.integration
def test_exit_codes_per_policy(cells: Cells, client: Client) -> None:
    """never keeps any exit; on-failure restarts a non-zero exit (up to max_retries) and keeps a
    zero one; always restarts both."""
    cases = {
        ("never", 0): {"restart": {"policy": "never"}},
        ("never", 3): {"restart": {"policy": "never"}},
        ("on-failure", 0): {"restart": {"policy": "on-failure", "max_retries": 1}},
        ("on-failure", 3): {"restart": {"policy": "on-failure", "max_retries": 1}},
        ("always", 0): {"restart": {"policy": "always"}},
        ("always", 3): {"restart": {"policy": "always"}},
    }
    ids = {
        key: cells.submit(
            f"exit-{key[0]}-{key[1]}",
            ["sh", "-c", f"trap 'exit 0' TERM; sleep 0.3 & wait; exit {key[1]}"],
            **kw,
        )[0]
        for key, kw in cases.items()
    }

    def view(key: tuple[str, int]) -> dict[str, Any]:
        return client.get_cell(ids[key])

    for code in (0, 3):
        wait_for(
            lambda code=code: view(("always", code))["restarts"] >= 1, 60, what=f"always/{code}"
        )
    settled = wait_for(
        lambda: (c := view(("on-failure", 3)))["state"] == "EXITED" and c["restarts"] == 1 and c,
        60,
        what="on-failure/3: one restart, then EXITED",
    )
    assert settled["exit_code"] == 3
    # The restarting policies have restarted meanwhile: the others had every chance to.
    for key in (("never", 0), ("never", 3), ("on-failure", 0)):
        c = wait_for(lambda key=key: (c := view(key))["state"] == "EXITED" and c, 30, what=str(key))
        assert (c["exit_code"], c["restarts"]) == (key[1], 0), (key, c)
        assert "restarted" not in event_types(c), (key, event_types(c))
