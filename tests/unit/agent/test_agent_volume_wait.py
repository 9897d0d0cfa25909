"""No container starts without the mounts its cell declares.

A cell whose volume is not on this host yet (`pending_volumes` in its assignment) gets no
container: the agent reports it CREATING with the reason and creates it, with the mount, once an
assignment names the volume. A container created without its mount would be adopted as it is
later (same generation), its data directory missing for good.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agent_support import ENGINE_REF, HOST_ID, assignment

from cellplane.agent.prepare import Preparer
from cellplane.agent.reconcile import Memory, reconcile
from cellplane.agent.runner import Agent
from cellplane.drivers.base import MountSpec
from cellplane.drivers.errors import TemporaryDriverError
from cellplane.drivers.fake import FakeDriver
from cellplane.wire import agent_plain as wire

AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]

MOUNT = {"volume_id": "vol-1", "engine_name": "cp-vol-1", "path": "/var/lib/pg"}


def _view(*cells: dict[str, Any], revision: int, full: bool) -> dict[str, Any]:
    return {"revision": revision, "full": full, "cells": list(cells), "volumes": []}


@pytest.fixture
def image_archive(driver: FakeDriver, tmp_path: Path) -> None:
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


def test_reconcile_creates_nothing_for_a_cell_waiting_for_its_volume() -> None:
    waiting = wire.parse(wire.CellAssignment, assignment(pending_volumes=["pg-data"]))
    ready = wire.parse(wire.CellAssignment, assignment("cel-2", mounts=[MOUNT]))
    actions = reconcile({"cel-1": waiting, "cel-2": ready}, {}, [], Memory(), 0.0, full_sync=True)
    assert [(a.kind, a.cell_id) for a in actions] == [("CREATE", "cel-2")]


def test_a_vanished_container_is_not_recreated_while_its_volume_is_away() -> None:
    cell = wire.parse(
        wire.CellAssignment,
        assignment(pending_volumes=["pg-data"], restart={"policy": "always"}),
    )
    memory = Memory()
    memory.seen_container.add("cel-1")  # it had a container, removed behind our back
    assert reconcile({"cel-1": cell}, {}, [], memory, 0.0, full_sync=True) == []


def test_the_preparer_refuses_to_create_without_the_mounts(tmp_path: Path) -> None:
    driver = FakeDriver()
    prep = Preparer(driver, object(), tmp_path, subnets=False)  # type: ignore[arg-type]
    cell = wire.parse(wire.CellAssignment, assignment(pending_volumes=["pg-data"]))
    with pytest.raises(TemporaryDriverError, match="'pg-data'"):
        prep.create(cell, HOST_ID, [], recreated=False)
    assert driver.called("create") == [] and driver.containers == {}


@pytest.mark.usefixtures("image_archive", "clock")
def test_the_container_waits_for_its_volume_then_gets_the_mount(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    # The cell is assigned before its volume is on this host: nothing is created.
    agent._apply_assignments(_view(assignment(pending_volumes=["pg-data"]), revision=5, full=True))
    run_pass(agent)
    run_pass(agent)
    assert driver.called("create") == []
    last = server.last("cel-1")
    assert last["state"] == "CREATING"
    assert "'pg-data'" in last["message"] and "waiting" in last["message"]
    # The volume is here: the container is created with its mount, and runs.
    agent._apply_assignments(_view(assignment(mounts=[MOUNT]), revision=6, full=False))
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    assert box.state == "running"
    assert box.spec.mounts == [MountSpec("cp-vol-1", "/var/lib/pg", False)]
    assert "cp-vol-1" in driver.volumes
    assert server.last("cel-1")["state"] == "RUNNING"
