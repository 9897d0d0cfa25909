"""A container made to be started later (`docker create`) has its start prepared meanwhile.

`Preparer.create` asks a driver that can (`PreparesStart`: podman's init) to do the part of the
start that runs nothing, so that `docker run`'s start, on its way while the container is made,
is quick. The command itself runs only when the start comes; a container that publishes ports or
runs in a sandbox is not prepared; an engine that cannot prepare changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_support import ENGINE_REF, HOST_ID, assignment

from cellplane.agent.prepare import Preparer
from cellplane.drivers.base import PreparesStart
from cellplane.drivers.errors import TemporaryDriverError
from cellplane.drivers.fake import FakeDriver
from cellplane.wire import agent_plain as wire
from cellplane.wire.exec import STDIN_LABEL, TTY_LABEL


class PreparingDriver(FakeDriver):
    """The fake engine with a start that can be prepared (and made to fail)."""

    def __init__(self) -> None:
        super().__init__(images=[ENGINE_REF])
        self.prepared: list[str] = []
        self.refuse = False
        self.refuse_limits = False

    def prepare_start(self, container_id: str) -> None:
        if self.refuse:
            raise TemporaryDriverError("the runtime could not create the container")
        assert self.containers[container_id].state == "created"
        self.prepared.append(container_id)

    def apply_limits(self, container_id: str, cpu: float, memory_mb: int) -> None:
        box = self.containers[container_id]
        if box.state == "created" and container_id in self.prepared:  # its cgroup exists
            self._record("apply_limits", container_id, cpu, memory_mb)
            if self.refuse_limits:
                raise TemporaryDriverError("the engine's update failed")
            box.limits = (cpu, memory_mb)
            return
        super().apply_limits(container_id, cpu, memory_mb)


def _cell(**over: Any) -> wire.CellAssignment:
    return wire.parse(wire.CellAssignment, assignment(**over))


def _preparer(driver: FakeDriver, tmp_path: Path) -> Preparer:
    return Preparer(driver, object(), tmp_path, subnets=False)  # type: ignore[arg-type]


def _create(prep: Preparer, cell: wire.CellAssignment, *latest: wire.CellAssignment | None) -> str:
    """Create `cell`; each call of `latest` answers the next of `latest` (the last one after)."""
    answers = list(latest)

    def newest(_: str) -> wire.CellAssignment | None:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    events: list[dict[str, Any]] = []
    prep.create(cell, HOST_ID, events, recreated=False, latest=newest)
    return str(prep.driver.by_name("cp-cel-1").id)  # type: ignore[attr-defined]


def test_the_protocol_is_what_the_driver_offers() -> None:
    assert isinstance(PreparingDriver(), PreparesStart)
    assert not isinstance(FakeDriver(), PreparesStart)  # the agent then starts as before


def test_a_container_to_be_started_later_is_prepared_not_started(tmp_path: Path) -> None:
    driver = PreparingDriver()
    created = _cell(desired_state="CREATED")
    cid = _create(_preparer(driver, tmp_path), created, created)
    assert driver.prepared == [cid]
    assert driver.containers[cid].state == "created"
    assert driver.called("start") == []
    # Its limits are set with the preparation (not after the start, as for others).
    assert driver.called("apply_limits") == [(cid, 0.5, 256)]
    assert driver.containers[cid].limits == (0.5, 256)


def test_a_start_that_came_while_it_was_prepared_is_done_at_once(tmp_path: Path) -> None:
    driver = PreparingDriver()
    created, started = _cell(desired_state="CREATED"), _cell(desired_state="RUNNING")
    cid = _create(_preparer(driver, tmp_path), created, created, started)
    assert driver.prepared == [cid]
    assert driver.called("start") == [(cid,)]
    assert driver.containers[cid].state == "running"
    assert driver.called("apply_limits") == [(cid, 0.5, 256)]  # once, before the start


def test_limits_are_set_after_the_start_unless_set_with_the_preparation(tmp_path: Path) -> None:
    driver = PreparingDriver()
    prep = _preparer(driver, tmp_path)
    created = _cell(desired_state="CREATED")
    cid = _create(prep, created, created)
    # `docker update` changed them meanwhile: the start sets the cell's own.
    prep.start(_cell(cpu=0.25, memory_mb=128), cid)
    assert driver.called("apply_limits") == [(cid, 0.5, 256), (cid, 0.25, 128)]
    assert driver.containers[cid].limits == (0.25, 128)
    # A start after the first (a restart) sets them again, as for any container.
    driver.mark_exited(cid, 0)
    prep.start(_cell(cpu=0.25, memory_mb=128), cid)
    assert driver.called("apply_limits")[-1] == (cid, 0.25, 128)
    assert len(driver.called("apply_limits")) == 3


def test_limits_the_engine_did_not_set_before_the_start_are_set_after_it(tmp_path: Path) -> None:
    driver = PreparingDriver()
    driver.refuse_limits = True
    prep = _preparer(driver, tmp_path)
    created = _cell(desired_state="CREATED")
    cid = _create(prep, created, created)
    assert driver.prepared == [cid]
    prep.start(_cell(), cid)
    assert driver.called("apply_limits") == [(cid, 0.5, 256), (cid, 0.5, 256)]
    assert driver.containers[cid].limits == (0.5, 256)


def test_a_start_that_came_while_it_was_made_is_not_delayed_by_a_preparation(
    tmp_path: Path,
) -> None:
    driver = PreparingDriver()
    cid = _create(
        _preparer(driver, tmp_path), _cell(desired_state="CREATED"), _cell(desired_state="RUNNING")
    )
    assert driver.prepared == []
    assert driver.containers[cid].state == "running"


def test_a_cell_created_to_run_is_started_without_a_preparation(tmp_path: Path) -> None:
    driver = PreparingDriver()
    cell = _cell()
    cid = _create(_preparer(driver, tmp_path), cell, cell)
    assert driver.prepared == []
    assert driver.containers[cid].state == "running"


@pytest.mark.parametrize(
    "over",
    [
        {"ports": [{"container_port": 80, "host_port": 8080, "protocol": "tcp"}]},
        {"isolation": "sandbox"},
        {"labels": {STDIN_LABEL: "open"}},
        {"labels": {TTY_LABEL: "true"}},
    ],
    ids=["publishes-ports", "sandbox", "stdin", "tty"],
)
def test_what_a_preparation_would_change_or_race_is_not_prepared(
    tmp_path: Path, over: dict[str, Any]
) -> None:
    driver = PreparingDriver()
    created = _cell(desired_state="CREATED", **over)
    _create(_preparer(driver, tmp_path), created, created)
    assert driver.prepared == []
    assert driver.called("start") == []


def test_an_engine_that_cannot_prepare_leaves_the_container_created(tmp_path: Path) -> None:
    driver = PreparingDriver()
    driver.refuse = True
    created = _cell(desired_state="CREATED")
    cid = _create(_preparer(driver, tmp_path), created, created)
    assert driver.prepared == []
    assert driver.containers[cid].state == "created"
    assert driver.called("start") == [] and driver.called("apply_limits") == []
