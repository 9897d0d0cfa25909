"""The `Agent` on a FakeDriver and a fake server: create, report, restart, adopt, stop, delete."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from agent_support import ENGINE_REF, HOST_ID, assignment

from cellplane.agent.runner import Agent, container_spec
from cellplane.drivers.base import NetworkSpec
from cellplane.drivers.errors import TemporaryDriverError
from cellplane.drivers.fake import FakeDriver

AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]


def full(*cells: dict[str, Any], revision: int = 5) -> dict[str, Any]:
    return {"revision": revision, "full": True, "cells": list(cells), "volumes": []}


def delta(*cells: dict[str, Any], revision: int = 6) -> dict[str, Any]:
    return {"revision": revision, "full": False, "cells": list(cells), "volumes": []}


@pytest.fixture
def image_archive(driver: FakeDriver, tmp_path: Any) -> None:
    """What loading the downloaded archive of img-1 puts in the fake engine."""
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


def container(driver: FakeDriver, cell_id: str = "cel-1") -> Any:
    return driver.by_name(f"cp-{cell_id}")


def test_register_sends_name_and_capacity(agent_factory: AgentFactory, server: Any) -> None:
    agent = agent_factory()
    assert agent.host_id == HOST_ID
    (body,) = server.registrations
    assert body["name"] == "host-1" and body["join_token"] == "cpj_test"
    capacity = body["capacity"]
    assert set(capacity) == {"cpu", "memory_mb", "disk_gb", "cores", "cpu_ratio"}
    # Allocatable CPU is the cores times the overcommit ratio, both sent for `host show`.
    assert capacity["cpu"] == round(capacity["cores"] * capacity["cpu_ratio"], 3)
    assert body["agent_secret"] == agent.agent_secret


@pytest.mark.usefixtures("image_archive", "clock")
def test_create_downloads_the_image_and_reports_running(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, tmp_path: Any
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    box = container(driver)
    assert box.state == "running"
    assert box.spec.image == ENGINE_REF
    assert box.spec.labels["cellplane.host"] == HOST_ID
    assert box.spec.labels["cellplane.cell"] == "cel-1"
    assert "cp-prj-1" in driver.networks
    assert [d[0] for d in server.downloads] == ["img-1"]
    assert not (tmp_path / "images" / "img-1.tar").exists()  # removed once loaded
    last = server.last("cel-1")
    assert last["state"] == "RUNNING"
    assert last["container_id"] == box.id
    assert last["address"] and last["address"].startswith("10.89.")
    assert last["restarts"] == 0
    assert server.event_types("cel-1") == ["image-ready", "created", "started"]
    # The pass saw it CREATING before the action ran; the action's RUNNING followed within the
    # hold of a transient state, and replaced it: one report, the truth.
    assert [r["state"] for r in server.all_reports("cel-1")] == ["RUNNING"]
    assert not agent._held
    # A second pass changes nothing and reports nothing new.
    before = (len(driver.called("create")), len(driver.called("start")), len(server.reports))
    run_pass(agent)
    assert (len(driver.called("create")), len(driver.called("start")), len(server.reports)) == (
        before
    )


@pytest.mark.usefixtures("image_archive", "clock")
def test_image_present_in_the_engine_is_not_downloaded(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    driver.images.add(ENGINE_REF)
    agent = agent_factory()
    agent._apply_assignments(full(assignment("cel-1"), assignment("cel-2")))
    run_pass(agent)
    assert server.downloads == []
    assert driver.called("load_image") == []
    assert {container(driver, c).state for c in ("cel-1", "cel-2")} == {"running"}


@pytest.mark.usefixtures("clock")
def test_host_image_runs_on_the_host_root(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    host_image = {"id": "img-h", "kind": "host", "engine_ref": None, "sha256": None}
    agent._apply_assignments(full(assignment(image=host_image)))
    run_pass(agent)
    box = container(driver)
    assert box.spec.rootfs == "/" and box.spec.image is None
    assert server.downloads == [] and driver.called("has_image") == []
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("image_archive")
def test_exited_container_with_policy_always_is_restarted_after_backoff(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment(restart={"policy": "always", "max_retries": None})))
    run_pass(agent)
    box = container(driver)
    driver.mark_exited(box.id, 1)
    run_pass(agent)  # noticed: the restart waits for the backoff
    assert box.state == "exited" and box.starts == 1
    assert server.last("cel-1")["state"] == "EXITED"
    assert server.last("cel-1")["exit_code"] == 1
    clock.now += 1.0
    run_pass(agent)
    assert box.state == "running" and box.starts == 2
    last = server.last("cel-1")
    assert last["state"] == "RUNNING" and last["restarts"] == 1
    assert server.event_types("cel-1")[-1] == "restarted"
    # Exits again: counted again.
    driver.mark_exited(box.id, 0)
    run_pass(agent)
    clock.now += 60
    run_pass(agent)
    assert box.starts == 3 and server.last("cel-1")["restarts"] == 2


@pytest.mark.usefixtures("image_archive")
def test_on_failure_stops_after_max_retries(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    """max_retries bounds restarts even though the server's assignment is not re-sent.

    Status reports update `cell.restarts` on the server without bumping the host revision, so the
    agent's copy of the assignment keeps `restarts: 0`; the agent must count with its own number.
    """
    agent = agent_factory()
    policy = {"policy": "on-failure", "max_retries": 1}
    agent._apply_assignments(full(assignment(restart=policy)))
    run_pass(agent)
    box = container(driver)
    for _ in range(3):
        if box.state == "running":
            driver.mark_exited(box.id, 1)
        run_pass(agent)
        clock.now += 60
        run_pass(agent)
    assert server.last("cel-1")["restarts"] == 1
    assert box.starts == 2, f"restarted {box.starts - 1} times with max_retries 1"
    assert box.state == "exited"


@pytest.mark.usefixtures("image_archive", "clock")
def test_restarted_agent_adopts_running_containers(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    first = agent_factory()
    cells = [assignment("cel-1"), assignment("cel-2")]
    first._apply_assignments(full(*cells))
    run_pass(first)
    ids = {c: container(driver, c).id for c in ("cel-1", "cel-2")}
    first.stop()
    creates, starts = len(driver.called("create")), len(driver.called("start"))

    second = agent_factory()
    second._apply_assignments(full(*cells))
    run_pass(second)
    run_pass(second)
    assert len(driver.called("create")) == creates
    assert len(driver.called("start")) == starts
    assert driver.called("stop") == [] and driver.called("remove") == []
    for c, cid in ids.items():
        assert container(driver, c).id == cid
        last = server.last(c)
        assert last["state"] == "RUNNING" and last["container_id"] == cid


@pytest.mark.usefixtures("image_archive", "clock")
def test_restart_count_from_the_server_never_goes_backwards(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment(restarts=4)))
    run_pass(agent)
    assert server.last("cel-1")["restarts"] == 4
    agent._apply_assignments(delta(assignment(restarts=2)))
    run_pass(agent)
    assert agent._restarts["cel-1"] == 4


@pytest.mark.usefixtures("image_archive", "clock")
def test_stop_then_delete(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    agent = agent_factory()
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    box = container(driver)
    agent._apply_assignments(delta(assignment(desired_state="STOPPED"), revision=6))
    run_pass(agent)
    assert box.state == "exited"
    assert driver.called("stop") == [(box.id, 3.0)]
    assert server.last("cel-1")["state"] == "STOPPED"
    assert server.event_types("cel-1")[-1] == "stopped"

    agent._apply_assignments(delta(assignment(desired_state="DELETED"), revision=7))
    run_pass(agent)
    assert driver.containers == {}
    last = server.last("cel-1")
    assert last["removed"] is True
    assert [e["type"] for e in last["events"]] == ["stopped", "removed"]
    assert "cel-1" not in agent._desired
    run_pass(agent)
    assert driver.called("remove") == [(box.id, True)]


@pytest.mark.usefixtures("image_archive", "clock")
@pytest.mark.parametrize(("timeout", "expected"), [(0.0, 0.0), (None, 10.0), (25.0, 25.0)])
def test_stop_timeout_zero_kills_at_once(
    agent_factory: AgentFactory,
    driver: FakeDriver,
    run_pass: RunPass,
    timeout: float | None,
    expected: float,
) -> None:
    """`docker rm -f` and `docker stop -t 0` send 0: the engine must not wait 10 s first."""
    agent = agent_factory()
    agent._apply_assignments(full(assignment(stop_timeout=timeout)))
    run_pass(agent)
    box = container(driver)
    agent._apply_assignments(
        delta(assignment(desired_state="STOPPED", stop_timeout=timeout), revision=6)
    )
    run_pass(agent)
    assert driver.called("stop") == [(box.id, expected)]


@pytest.mark.usefixtures("image_archive", "clock")
def test_start_after_stop_runs_the_container_again(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass
) -> None:
    """`POST /v1/cells/{id}/start` on a stopped cell (policy never) must start its container."""
    agent = agent_factory()
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    box = container(driver)
    agent._apply_assignments(delta(assignment(desired_state="STOPPED"), revision=6))
    run_pass(agent)
    assert box.state == "exited"
    # The server stamps a start request like a restart request (services.cells.start).
    requested = datetime.now(UTC).isoformat()
    agent._apply_assignments(
        delta(assignment(desired_state="RUNNING", restart_requested_at=requested), revision=7)
    )
    run_pass(agent)
    run_pass(agent)
    assert box.state == "running", "desired RUNNING again, but the stopped container stays exited"
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("image_archive", "clock")
def test_orphans_are_removed_after_the_first_full_assignment(
    agent_factory: AgentFactory, driver: FakeDriver, run_pass: RunPass
) -> None:
    driver.images.add(ENGINE_REF)
    driver.ensure_network(NetworkSpec("cp-prj-1"))
    agent = agent_factory()
    orphan_id = driver.create(container_spec(assignment("cel-old"), HOST_ID, ENGINE_REF))
    foreign_id = driver.create(container_spec(assignment("cel-x"), "hst-other", ENGINE_REF))
    run_pass(agent)  # not synced yet: nothing is known to be an orphan
    assert orphan_id in driver.containers
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    assert orphan_id not in driver.containers
    assert foreign_id in driver.containers  # another host's container is not ours to touch


@pytest.mark.usefixtures("image_archive")
def test_temporary_engine_errors_back_off_and_retry(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, clock: Any
) -> None:
    agent = agent_factory()
    driver.fail_next("create", TemporaryDriverError("engine busy"))
    agent._apply_assignments(full(assignment()))
    run_pass(agent)
    assert "cel-1" in agent._memory.retry_at
    run_pass(agent)  # still inside the backoff: no second attempt
    assert len(driver.called("create")) == 1
    clock.now += 5
    run_pass(agent)
    assert container(driver).state == "running"
    assert "cel-1" not in agent._memory.retry_at
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("image_archive", "clock")
def test_networks_are_sized_as_the_control_plane_says_and_ensured_again_when_moved(
    agent_factory: AgentFactory, driver: FakeDriver, run_pass: RunPass
) -> None:
    agent = agent_factory()
    net = {"name": "cp-prj-1", "subnet": "10.128.0.0/24"}
    agent._apply_assignments(full(assignment("cel-1", network=net)))
    run_pass(agent)
    # The quota grew: the network (no cell used it on the server) moved to a /22.
    moved = {"name": "cp-prj-1", "subnet": "10.128.4.0/22"}
    agent._apply_assignments(delta(assignment("cel-2", network=moved)))
    run_pass(agent)
    agent._apply_assignments(delta(assignment("cel-3", network=moved)))
    run_pass(agent)
    calls = driver.called("ensure_network")
    # Once per (name, subnet); a /24 as the engine always made it, then the engine's pick of a /22.
    assert [(c[0], c[-1]) for c in calls] == [("cp-prj-1", None), ("cp-prj-1", 22)]
