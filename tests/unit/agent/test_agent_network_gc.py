"""Engine networks no assigned cell is on are removed (`Preparer.collect_networks`), after a grace
for one just readied; a network the engine still has a container on is kept; a later cell gets
its network again. The pure rule (`unused_networks`) is tested on its own first."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
from agent_support import ENGINE_REF, assignment

from cellplane.agent.prepare import unused_networks
from cellplane.agent.runner import Agent
from cellplane.drivers.base import ContainerSpec, NetworkSpec
from cellplane.drivers.fake import FakeDriver

AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]


@pytest.fixture
def image_archive(driver: FakeDriver, tmp_path: Any) -> None:
    """What loading the downloaded archive of img-1 puts in the fake engine."""
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


def full(*cells: dict[str, Any], revision: int) -> dict[str, Any]:
    return {"revision": revision, "full": True, "cells": list(cells), "volumes": []}


@pytest.mark.parametrize(
    ("in_use", "readied_at", "now", "expected"),
    [
        ({"a", "b"}, {}, 100.0, []),  # every network has a cell
        (set(), {}, 100.0, ["a", "b"]),  # none has: an earlier agent's, readied "long ago"
        ({"a"}, {"b": 95.0}, 100.0, []),  # b readied 5 s ago: within the grace
        ({"a"}, {"b": 90.0}, 100.0, ["b"]),  # exactly the grace: gone
        (set(), {"a": 99.0, "b": -math.inf}, 100.0, ["b"]),
    ],
)
def test_unused_networks(
    in_use: set[str], readied_at: dict[str, float], now: float, expected: list[str]
) -> None:
    assert unused_networks(["a", "b"], in_use, readied_at, now, 10.0) == expected


def test_zero_grace_takes_every_network_without_a_cell() -> None:
    assert unused_networks(["a", "b"], ["b"], {"a": 5.0}, 5.0, 0.0) == ["a"]


def _agent(factory: AgentFactory, gc_s: float) -> Agent:
    agent = factory()
    agent.cfg = dataclasses.replace(agent.cfg, network_gc_s=gc_s)
    return agent


@pytest.mark.usefixtures("image_archive", "clock")
def test_the_network_of_the_last_cell_goes_and_comes_back_with_the_next_cell(
    agent_factory: AgentFactory, driver: FakeDriver, run_pass: RunPass
) -> None:
    agent = _agent(agent_factory, 0.0)
    agent._apply_assignments(full(assignment(), revision=5))
    run_pass(agent)
    assert "cp-prj-1" in driver.networks
    agent._apply_assignments(full(assignment(desired_state="DELETED"), revision=6))
    run_pass(agent)
    run_pass(agent)
    assert driver.containers == {}
    assert "cp-prj-1" not in driver.networks
    assert driver.called("remove_network") == [("cp-prj-1",)]

    agent._apply_assignments(full(assignment("cel-2"), revision=7))
    run_pass(agent)
    assert "cp-prj-1" in driver.networks  # readied again, not taken from a stale cache
    assert driver.by_name("cp-cel-2").state == "running"


@pytest.mark.usefixtures("image_archive", "clock")
def test_a_network_within_its_grace_or_with_a_cell_stays(
    agent_factory: AgentFactory, driver: FakeDriver, run_pass: RunPass
) -> None:
    agent = _agent(agent_factory, 60.0)
    agent._apply_assignments(
        full(assignment(), assignment("cel-2", network="cp-prj-2"), revision=5)
    )
    run_pass(agent)
    agent._apply_assignments(full(assignment(), revision=6))  # cel-2 no longer assigned here
    run_pass(agent)
    run_pass(agent)
    assert {"cp-prj-1", "cp-prj-2"} <= set(driver.networks)  # prj-2's readied < 60 s ago
    assert driver.called("remove_network") == []


@pytest.mark.usefixtures("clock")
def test_a_network_the_engine_still_has_a_container_on_is_kept(
    agent_factory: AgentFactory, driver: FakeDriver, run_pass: RunPass
) -> None:
    agent = _agent(agent_factory, 0.0)
    labels = {"cellplane.host": agent.host_id, "cellplane.project": "prj-9"}
    driver.ensure_network(NetworkSpec(name="cp-prj-9", labels=labels))
    driver.images.add("x")
    driver.create(ContainerSpec(name="left", image="x", network="cp-prj-9", labels={}))
    agent._apply_assignments(full(revision=5))
    run_pass(agent)
    assert "cp-prj-9" in driver.networks
    assert driver.called("remove_network") == [("cp-prj-9",)]  # refused by the engine: kept
