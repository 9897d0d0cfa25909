"""A transient state (CREATING, STARTING) is held a moment before it is reported, and what
follows within the hold replaces it (`agent.reporting`); what is not transient, or explains
itself (a message), or carries events, goes out at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from cellplane.agent import reporting
from cellplane.agent.runner import Agent

AgentFactory = Callable[[], Agent]


def _report(state: str, **more: Any) -> dict[str, Any]:
    return {"cell_id": "cel-1", "state": state, "generation": 1, "restarts": 0, **more}


def _outbox(agent: Agent) -> list[str]:
    with agent._outbox_cv:
        agent._release_held()
        return [r["state"] for r in agent._outbox]


def test_a_transient_state_is_held_and_replaced_by_what_follows(
    agent_factory: AgentFactory,
) -> None:
    agent = agent_factory()
    agent._outbox.clear()
    agent._queue(_report("CREATING"))
    assert _outbox(agent) == []  # held
    agent._queue(_report("CREATED", container_id="c1"))
    assert _outbox(agent) == ["CREATED"] and not agent._held
    agent._queue(_report("STARTING", container_id="c1"))
    agent._queue(_report("RUNNING", container_id="c1", address="10.89.0.2"))
    assert _outbox(agent) == ["CREATED", "RUNNING"] and not agent._held


def test_a_transient_state_that_lasts_is_reported_after_the_hold(
    agent_factory: AgentFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = agent_factory()
    agent._outbox.clear()
    monkeypatch.setattr(reporting, "TRANSIENT_HOLD_S", 0.0)  # the hold has passed
    agent._queue(_report("STARTING", container_id="c1"))
    assert _outbox(agent) == ["STARTING"]
    # ... and the same truth is not reported twice.
    agent._queue(_report("STARTING", container_id="c1"))
    assert _outbox(agent) == ["STARTING"] and not agent._held


def test_the_report_thread_sends_a_held_state_once_its_hold_is_over(
    agent_factory: AgentFactory, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporting, "TRANSIENT_HOLD_S", 0.05)
    agent = agent_factory()
    threading.Thread(target=agent._report_loop, daemon=True).start()  # stopped with the agent
    agent._queue(_report("CREATING"))
    deadline = 100
    while not server.all_reports("cel-1") and deadline:
        agent._stop.wait(0.02)
        deadline -= 1
    assert [r["state"] for r in server.all_reports("cel-1")] == ["CREATING"]


@pytest.mark.parametrize(
    ("report", "events"),
    [
        (_report("CREATING", message="waiting for its volume 'data' to be on this host"), None),
        (_report("STARTING", container_id="c1"), [{"type": "created", "message": "c1"}]),
        (_report("RUNNING", container_id="c1"), None),
        (_report("EXITED", container_id="c1", exit_code=0), None),
    ],
)
def test_what_explains_itself_or_is_not_transient_goes_at_once(
    agent_factory: AgentFactory, report: dict[str, Any], events: Any
) -> None:
    agent = agent_factory()
    agent._outbox.clear()
    agent._queue(report, events)
    assert _outbox(agent) == [report["state"]] and not agent._held
