"""An agent keeps nothing of a cell deleted from its host: its memory between passes, restart
count and observation times go with it, so a long run of creates and deletes does not grow
them. (Found while looking for why the agent's RSS grows in `bench/load.py`'s soak; removing
these did not change that growth measurably: its cause is still open, see docs/fuzzing.md.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from agent_support import ENGINE_REF, assignment

from cellplane.agent.reconcile import Memory
from cellplane.agent.runner import Agent
from cellplane.drivers.fake import FakeDriver

AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]


@pytest.fixture
def image_archive(driver: FakeDriver, tmp_path: Any) -> None:
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


def _full(*cells: dict[str, Any], revision: int) -> dict[str, Any]:
    return {"revision": revision, "full": True, "cells": list(cells), "volumes": []}


def _remembered(agent: Agent, cell_id: str) -> list[str]:
    """Names of the agent's per-cell records that still mention `cell_id`."""
    found = [
        f"memory.{f.name}"
        for f in dataclasses.fields(Memory)
        if cell_id in getattr(agent._memory, f.name)
    ]
    for name in ("_desired", "_observed", "_observed_at", "_restarts", "_reported", "_end_reports"):
        if cell_id in getattr(agent, name):
            found.append(name)
    return found


@pytest.mark.usefixtures("image_archive", "clock")
def test_a_deleted_cell_leaves_nothing_behind(
    agent_factory: AgentFactory, driver: FakeDriver, run_pass: RunPass
) -> None:
    agent = agent_factory()
    restarting = assignment(restart={"policy": "always", "max_retries": None})
    agent._apply_assignments(_full(restarting, revision=5))
    run_pass(agent)
    agent._restarts["cel-1"] = 2  # as after restarts
    assert _remembered(agent, "cel-1")  # the cell is known while it is here
    agent._apply_assignments(_full(dict(restarting, desired_state="DELETED"), revision=6))
    run_pass(agent)
    run_pass(agent)
    assert driver.containers == {}
    assert _remembered(agent, "cel-1") == []
