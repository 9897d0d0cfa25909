"""Faults on a host (issue 18), on a FakeDriver: the engine supervisor's decisions, the agent while
its engine is down and when it returns, containers removed behind its back, and a removal that
waits for the engine's word."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from agent_support import ENGINE_REF, HOST_ID, assignment

from cellplane.agent import supervisor as sup
from cellplane.agent.runner import Agent, container_spec
from cellplane.agent.supervisor import EngineHealth, EngineSupervisor, EngineWatch
from cellplane.drivers.base import NetworkSpec
from cellplane.drivers.errors import TemporaryDriverError
from cellplane.drivers.fake import FakeDriver


def full(*cells: dict[str, Any], revision: int = 5) -> dict[str, Any]:
    return {"revision": revision, "full": True, "cells": list(cells), "volumes": []}


def delta(*cells: dict[str, Any], revision: int = 6) -> dict[str, Any]:
    return {"revision": revision, "full": False, "cells": list(cells), "volumes": []}


def container(driver: FakeDriver, cell_id: str = "cel-1") -> Any:
    return driver.by_name(f"cp-{cell_id}")


AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]

# --- EngineWatch (pure) -----------------------------------------------------------------------


def test_a_dead_engine_is_down_at_once_and_restarted_with_backoff() -> None:
    w = EngineWatch()
    assert w.observe(0.0, True, True) == sup.NONE and w.up
    assert w.observe(1.0, False, False, "killed by signal 9") == sup.RESTART
    assert not w.up and w.message == "podman service process died (killed by signal 9)"
    # The restart did not help: the next attempts wait 0.5, 1, 2 ... s.
    assert w.observe(1.2, False, False) == sup.NONE
    assert w.observe(1.5, False, False) == sup.RESTART
    assert w.observe(2.4, False, False) == sup.NONE
    assert w.observe(2.5, False, False) == sup.RESTART
    assert w.observe(4.4, False, False) == sup.NONE
    assert w.observe(4.5, False, False) == sup.RESTART
    w.restart_failed("no podman")
    assert w.message is not None and w.message.endswith("restart failed: no podman")
    assert w.observe(5.0, True, True) == sup.NONE
    assert w.up and w.message is None
    # Stable for a while: the backoff starts afresh.
    w.observe(5.0 + w.stable_s, True, True)
    assert w.attempts == 0


def test_a_silent_live_engine_is_down_after_the_grace_and_killed_when_hung() -> None:
    w = EngineWatch(grace_s=2.0, hung_s=10.0)
    assert w.observe(0.0, True, False) == sup.NONE and w.up  # slow, not dead
    assert w.observe(1.9, True, False) == sup.NONE and w.up
    assert w.observe(2.0, True, False) == sup.NONE and not w.up
    assert w.message is not None and "not answering" in w.message
    assert w.observe(9.9, True, False) == sup.NONE
    assert w.observe(10.0, True, False) == sup.KILL_AND_RESTART
    # It answers again by itself before that: up, no restart.
    w2 = EngineWatch(grace_s=2.0, hung_s=10.0)
    w2.observe(0.0, True, False)
    w2.observe(3.0, True, False)
    assert w2.observe(4.0, True, True) == sup.NONE and w2.up


class FakeEngine:
    def __init__(self) -> None:
        self.alive = True
        self.answering = True
        self.starts = 0
        self.kills = 0
        self.fail_starts = 0

    def start(self, timeout: float = 20.0) -> str:
        if self.fail_starts:
            self.fail_starts -= 1
            raise TemporaryDriverError("podman service exited with 125")
        self.starts += 1
        self.alive = self.answering = True
        return "unix:///fake.sock"

    def running(self) -> bool:
        return self.alive

    def answers(self, timeout: float = 1.0) -> bool:
        return self.alive and self.answering

    def exit_description(self) -> str:
        return "killed by signal 9"

    def kill(self) -> None:
        self.kills += 1
        self.alive = False


def test_supervisor_restarts_a_dead_engine_and_reports_down_then_up() -> None:
    engine = FakeEngine()
    seen: list[EngineHealth] = []
    s = EngineSupervisor(engine, seen.append)
    s.check_once()
    assert seen == []  # healthy: nothing to say
    engine.alive = False
    engine.fail_starts = 1
    s.check_once()  # down; the first restart fails
    assert engine.starts == 0
    assert [h.up for h in seen] == [False, False]
    assert seen[-1].message is not None and "restart failed" in seen[-1].message
    s.watch.next_attempt_at = 0.0  # skip the backoff wait
    s.check_once()
    assert engine.starts == 1
    assert seen[-1].up and seen[-1].restarts == 1 and s.restarts == 1


# --- the agent while its engine is down -------------------------------------------------------


@pytest.fixture
def image_archive(driver: FakeDriver, tmp_path: Any) -> None:
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


def engine_reports(server: Any) -> list[dict[str, Any]]:
    return [r["engine"] for batch in server.reports for r in batch if "engine" in r]


@pytest.mark.usefixtures("image_archive")
def test_engine_down_pauses_the_agent_and_its_return_retries_at_once(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    agent = agent_factory()
    assert server.registrations[0]["engine"]["state"] == "UP"
    agent._apply_assignments(full(assignment("cel-1")))
    run_pass(agent)
    running = container(driver, "cel-1").id
    # The engine dies: the supervisor says so.
    agent._engine_changed(EngineHealth(False, "podman service process died", clock.now))
    agent._flush_reports()
    assert engine_reports(server)[-1]["state"] == "DOWN"
    assert "died" in engine_reports(server)[-1]["message"]
    # A new cell arrives meanwhile; the pass does nothing (nothing can be done or seen)...
    agent._apply_assignments(delta(assignment("cel-2")))
    calls = len(driver.calls)
    run_pass(agent)
    assert len(driver.calls) == calls
    # ...a create that raced the news is retried, not a failure of the cell.
    driver.fail_next("create", TemporaryDriverError("container engine unreachable"))
    agent._engine_health = EngineHealth(True, None, clock.now)
    run_pass(agent)
    agent._engine_health = EngineHealth(False, "down", clock.now)
    assert all(r.get("state") != "FAILED" for r in server.all_reports("cel-2"))
    # The engine is back (after a long outage the retry would be far off): at once, no wait.
    agent._memory.retry_at["cel-2"] = clock.now + 30
    agent._engine_changed(EngineHealth(True, None, clock.now, restarts=1))
    assert agent._wake.is_set()
    run_pass(agent)
    assert container(driver, "cel-2").state == "running"
    assert server.last("cel-2")["state"] == "RUNNING"
    assert container(driver, "cel-1").id == running  # adopted, untouched
    assert engine_reports(server)[-1] == {**engine_reports(server)[-1], "state": "UP"}
    assert engine_reports(server)[-1]["restarts"] == 1


# --- containers removed behind the agent's back -----------------------------------------------


@pytest.mark.usefixtures("image_archive", "clock")
def test_never_policy_ends_the_cell_when_its_container_is_removed(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment("cel-1")))
    run_pass(agent)
    driver.mark_removed(container(driver, "cel-1").id)
    run_pass(agent)
    run_pass(agent)
    assert driver.containers == {}, "recreated although its policy is never"
    last = server.last("cel-1")
    assert last["state"] == "FAILED" and last["ended"] is True
    assert "removed outside Cellplane" in last["message"]
    assert server.event_types("cel-1")[-1] == "container-removed"
    assert "recreated" not in server.event_types("cel-1")
    # Started again by its user: a new container.
    agent._apply_assignments(
        delta(assignment("cel-1", restart_requested_at="2099-01-01T00:00:00+00:00"))
    )
    run_pass(agent)
    assert container(driver, "cel-1").state == "running"
    assert server.event_types("cel-1")[-2:] == ["created", "started"]


@pytest.mark.usefixtures("image_archive", "clock")
def test_on_failure_counts_a_removal_against_its_retries_and_always_recreates(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(
        full(
            assignment("cel-1", restart={"policy": "on-failure", "max_retries": 1}),
            assignment("cel-2", restart={"policy": "always", "max_retries": None}),
        )
    )
    run_pass(agent)
    for round_ in (1, 2):
        for cid in ("cel-1", "cel-2"):
            if f"cp-{cid}" in {c.spec.name for c in driver.containers.values()}:
                driver.mark_removed(container(driver, cid).id)
        run_pass(agent)
        run_pass(agent)
        assert container(driver, "cel-2").state == "running"
        assert server.last("cel-2")["restarts"] == round_
    # on-failure, max 1: the first removal was recreated (1 restart), the second ends the cell.
    assert server.event_types("cel-1").count("recreated") == 1
    last = server.last("cel-1")
    assert (last["state"], last["restarts"], last.get("ended")) == ("FAILED", 1, True)
    assert "cp-cel-1" not in {c.spec.name for c in driver.containers.values()}


# --- REMOVE before the assignments: the engine's word decides ---------------------------------


@pytest.mark.usefixtures("image_archive", "clock")
def test_remove_without_a_known_container_id_finds_it_by_name(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any
) -> None:
    """A restarted agent lists the engine before its first assignments: the listing files every
    container as an orphan (nobody claims it yet), so the cached view knows no container for the
    deleted cell. The removal must find it by name and report done only once it is gone."""
    driver.images.add(ENGINE_REF)
    driver.ensure_network(NetworkSpec("cp-prj-1"))
    cid = driver.create(container_spec(assignment("cel-1"), HOST_ID, ENGINE_REF))
    driver.start(cid)
    agent = agent_factory()
    agent.reconcile_once()  # the first listing, before any assignment
    agent._apply_assignments(full(assignment("cel-1", desired_state="DELETED")))
    # A quick pass on the cached listing, as the loop runs when woken by the assignments.
    agent._listed = True  # (what an older agent kept: the stale cache)
    agent.reconcile_once(full=False)
    deadline = time.monotonic() + 5
    while agent._busy and time.monotonic() < deadline:
        time.sleep(0.005)
    agent._flush_reports()
    assert cid not in driver.containers
    assert server.last("cel-1")["removed"] is True


@pytest.mark.usefixtures("image_archive", "clock")
def test_a_removal_the_engine_does_not_confirm_is_not_reported_done(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment("cel-1")))
    run_pass(agent)
    box = container(driver, "cel-1")
    real_remove = driver.remove
    driver.remove = lambda container_id, force=True: None  # type: ignore[method-assign]
    agent._apply_assignments(delta(assignment("cel-1", desired_state="DELETED")))
    run_pass(agent)
    assert box.id in driver.containers
    assert not any(r.get("removed") for r in server.all_reports("cel-1"))
    driver.remove = real_remove  # type: ignore[method-assign]
    agent._memory.retry_at.clear()
    run_pass(agent)
    assert box.id not in driver.containers
    assert server.last("cel-1")["removed"] is True


def test_a_full_assignment_makes_the_next_pass_list_the_engine(agent_factory: AgentFactory) -> None:
    agent = agent_factory()
    agent._listed = True
    agent._apply_assignments(full())
    assert agent._listed is False
