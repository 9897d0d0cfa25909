"""Fencing on the agent: stale generations are replaced, and the agent says when nothing is left
here that its full view does not assign (before the server counts the host READY again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from agent_support import ENGINE_REF, HOST_ID, assignment

from cellplane.agent.reconcile import Memory, is_stale, reconcile
from cellplane.agent.runner import Agent, container_spec
from cellplane.drivers.base import ContainerInfo, NetworkSpec
from cellplane.drivers.fake import FakeDriver
from cellplane.wire.agent_plain import CellAssignment, parse

AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]


def full(*cells: dict[str, Any], revision: int = 5) -> dict[str, Any]:
    return {"revision": revision, "full": True, "cells": list(cells), "volumes": []}


def fenced_reports(server: Any) -> list[int]:
    return [int(r["fenced"]) for batch in server.reports for r in batch if "fenced" in r]


def info(labels: dict[str, str], running: bool = True) -> ContainerInfo:
    return ContainerInfo(
        id="c1",
        name="cp-cel-1",
        state="running" if running else "exited",
        running=running,
        exit_code=None,
        labels=labels,
    )


# --- the pure rule --------------------------------------------------------------------------


def test_a_container_of_an_older_generation_is_stale() -> None:
    cell = parse(CellAssignment, assignment(generation=3))
    assert is_stale(cell, info({"cellplane.generation": "2"}))
    assert not is_stale(cell, info({"cellplane.generation": "3"}))
    assert is_stale(cell, info({}))  # no label: made before generations, i.e. generation 1
    assert is_stale(cell, info({"cellplane.generation": "junk"}))
    first = parse(CellAssignment, assignment())
    assert not is_stale(first, info({}))


def test_reconcile_removes_a_stale_container_and_never_adopts_it() -> None:
    cell = parse(CellAssignment, assignment(generation=2))
    memory = Memory(seen_container={"cel-1"})
    old = info({"cellplane.generation": "1", "cellplane.cell": "cel-1"})
    actions = reconcile({"cel-1": cell}, {"cel-1": old}, [], memory, 0.0, full_sync=True)
    assert [(a.kind, a.container_id) for a in actions] == [("REMOVE_ORPHAN", "c1")]
    # Gone: a new container is created, not "recreated after it vanished" (no restart counted).
    actions = reconcile({"cel-1": cell}, {}, [], memory, 1.0, full_sync=True)
    assert [(a.kind, a.reason) for a in actions] == [("CREATE", "created")]


# --- the runner -----------------------------------------------------------------------------


@pytest.fixture
def ready_engine(driver: FakeDriver, tmp_path: Any) -> None:
    driver.images.add(ENGINE_REF)
    driver.ensure_network(NetworkSpec("cp-prj-1"))


@pytest.mark.usefixtures("ready_engine", "clock")
def test_stale_generation_is_replaced_by_a_container_of_the_new_one(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    old_id = driver.create(container_spec(parse(CellAssignment, assignment()), HOST_ID, ENGINE_REF))
    driver.start(old_id)
    agent = agent_factory()
    agent._apply_assignments(full(assignment(generation=2)))
    run_pass(agent)
    assert old_id not in driver.containers
    run_pass(agent)
    new = driver.by_name("cp-cel-1")
    assert new.id != old_id
    assert new.spec.labels["cellplane.generation"] == "2"
    assert server.last("cel-1")["generation"] == 2


@pytest.mark.usefixtures("ready_engine", "clock")
def test_fenced_is_reported_only_once_nothing_unassigned_is_left(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    moved = driver.create(
        container_spec(parse(CellAssignment, assignment("cel-moved")), HOST_ID, ENGINE_REF)
    )
    driver.start(moved)
    agent = agent_factory()
    run_pass(agent)  # no view yet: nothing can be said
    assert fenced_reports(server) == []
    agent._apply_assignments(full(assignment(), revision=7))
    run_pass(agent)  # removes the container of the cell that left
    assert moved not in driver.containers
    assert fenced_reports(server) == []  # not before a fresh listing confirms it
    run_pass(agent)
    assert fenced_reports(server) == [7]
    run_pass(agent)
    assert fenced_reports(server) == [7]  # said once per full view
    agent._apply_assignments(full(assignment(), revision=9))
    run_pass(agent)
    assert fenced_reports(server) == [7, 9]
