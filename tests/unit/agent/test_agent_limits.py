"""Limits after start, and engine errors on the cell: the `Agent` on a FakeDriver.

A container starts without its CPU quota (a quota slows the runtime's own start-up) and gets its
limits right after, before the cell is reported RUNNING; a container whose limits cannot be set is
stopped and its cell fails with a message. Engine errors reach the cell at once: IPAM exhaustion
fails it naming the network, other temporary errors say that they are being retried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from agent_support import ENGINE_REF, assignment

from cellplane.agent import prepare
from cellplane.agent.runner import Agent
from cellplane.drivers.errors import (
    AddressesExhausted,
    PermanentDriverError,
    TemporaryDriverError,
)
from cellplane.drivers.fake import FakeDriver

AgentFactory = Callable[[], Agent]
#: How many times the agent asks for a running container's limits before it gives up.
ATTEMPTS = len(prepare._LIMIT_RETRIES_S) + 1
RunPass = Callable[..., None]


def full(*cells: dict[str, Any]) -> dict[str, Any]:
    return {"revision": 5, "full": True, "cells": list(cells), "volumes": []}


@pytest.fixture(autouse=True)
def image_archive(driver: FakeDriver, tmp_path: Any) -> None:
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


def calls(driver: FakeDriver) -> list[str]:
    return [name for name, _ in driver.calls if name in ("create", "start", "apply_limits")]


@pytest.mark.usefixtures("clock")
def test_limits_are_set_right_after_start_and_before_running(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment(cpu=0.01, memory_mb=16)))
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    assert calls(driver) == ["create", "start", "apply_limits"]
    assert box.limits == (0.01, 16)
    assert box.spec.cpu == 0.01  # the spec keeps it; the driver sets it after start
    assert server.last("cel-1")["state"] == "RUNNING"
    running = [r for r in server.all_reports("cel-1") if r.get("state") == "RUNNING"]
    assert running and all("started" in [e["type"] for e in r["events"]] for r in running[:1])


@pytest.mark.usefixtures("clock")
def test_every_start_sets_the_limits_again(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment(restart={"policy": "always", "max_retries": None})))
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    driver.mark_exited(box.id, 1)
    box.limits = None
    for _ in range(3):  # seen exited, backoff, restarted
        clock.now += 5
        run_pass(agent)
    assert box.starts == 2
    assert box.limits == (0.5, 256)
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("clock")
def test_a_container_whose_limits_fail_is_stopped_and_the_cell_fails(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    for _ in range(ATTEMPTS):  # refused every time it is asked
        driver.fail_next("apply_limits", PermanentDriverError("cgroup refused the quota"))
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    assert box.state == "exited" and driver.called("kill") == [(box.id,)]
    last = server.last("cel-1")
    assert last["state"] == "FAILED"
    assert last["message"] == (
        "limits (cpu 0.5, memory 256 MB) not applied, so the container was stopped: "
        "cgroup refused the quota"
    )
    assert server.event_types("cel-1")[-1] == "failed"
    assert "RUNNING" not in [r.get("state") for r in server.all_reports("cel-1")]


@pytest.mark.usefixtures("clock")
def test_limits_refused_once_are_asked_again_and_the_container_keeps_running(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    """`runc update` fails on a container whose process is leaving while the engine still says
    it runs: one refusal is not a verdict; the agent asks again before stopping anything."""
    agent = agent_factory()
    driver.fail_next("apply_limits", PermanentDriverError("runc update: exit status 1"))
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    assert len(driver.called("apply_limits")) == 2 and driver.called("kill") == []
    assert box.limits == (0.5, 256)
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("clock")
def test_limits_that_fail_on_a_container_that_cannot_be_stopped_are_retried(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    agent = agent_factory()
    for _ in range(ATTEMPTS):
        driver.fail_next("apply_limits", TemporaryDriverError("engine busy"))
    driver.fail_next("kill", TemporaryDriverError("engine busy"))
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    assert box.state == "running" and box.limits is None
    assert agent._memory.unlimited == {"cel-1": box.id}
    assert "(retrying)" in server.last("cel-1")["message"]
    clock.now += 5
    run_pass(agent)
    assert box.limits == (0.5, 256)
    assert agent._memory.unlimited == {}
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("clock")
def test_a_restarted_agent_sets_the_limits_of_the_containers_it_adopts(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    first = agent_factory()
    first._apply_assignments(full(assignment()))
    run_pass(first)
    first.stop()
    box = driver.by_name("cp-cel-1")
    box.limits = None  # as if the first agent died between the start and the limits
    starts = len(driver.called("start"))
    second = agent_factory()
    second._apply_assignments(full(assignment()))
    run_pass(second)
    assert box.limits == (0.5, 256)
    assert len(driver.called("start")) == starts and driver.called("stop") == []
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("clock")
def test_ipam_exhaustion_fails_the_cell_at_once_naming_the_network(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    agent = agent_factory()
    engine = "IPAM error: failed to find free IP in range: 10.89.0.1 - 10.89.0.254"
    driver.fail_next("start", AddressesExhausted(engine))
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    last = server.last("cel-1")
    assert last["state"] == "FAILED"
    assert last["message"] == f"IPAM: no free address in cp-prj-1 ({engine})"
    assert server.event_types("cel-1")[-1] == "failed"
    # Retried with backoff: once an address is free, the cell runs.
    clock.now += 5
    run_pass(agent)
    assert server.last("cel-1")["state"] == "RUNNING"
    assert driver.by_name("cp-cel-1").limits == (0.5, 256)


@pytest.mark.usefixtures("clock")
def test_a_temporary_engine_error_is_on_the_cell_at_once(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    driver.fail_next("create", TemporaryDriverError("database is locked"))
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    last = server.last("cel-1")
    assert "state" not in last  # still on its way: not FAILED for one hiccup
    assert last["message"] == "database is locked (retrying)"
    assert server.event_types("cel-1")[-1] == "retrying"


@pytest.mark.usefixtures("clock")
def test_a_container_that_ended_before_its_limits_is_not_a_failure(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment(command=["sh", "-c", "exit 3"])))
    real_start = driver.start

    def start_and_exit(container_id: str) -> None:  # the command ends at once
        real_start(container_id)
        driver.mark_exited(container_id, 3)

    driver.start = start_and_exit  # type: ignore[method-assign]
    run_pass(agent)
    assert driver.called("kill") == []
    last = server.last("cel-1")
    assert last["state"] == "EXITED" and last["exit_code"] == 3
    assert "failed" not in server.event_types("cel-1")
