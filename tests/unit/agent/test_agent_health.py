"""Health checks run by the agent (`agent.health`): Docker's rule (`judge`), one check's run
(`probe`, on the fake engine: exit codes, output, timeouts) and the checking thread's pass
(`HealthChecking`): what it runs when, and which changes it reports."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cellplane.agent.health import (
    MAX_LOG,
    MAX_OUTPUT,
    Health,
    HealthChecking,
    command_of,
    judge,
    probe,
)
from cellplane.drivers.base import ContainerInfo, ContainerSpec, ExecResult
from cellplane.drivers.fake import FakeDriver
from cellplane.wire import agent_plain as wire


def _check(**kw: Any) -> wire.HealthCheck:
    return wire.parse(wire.HealthCheck, {"command": ["true"], **kw})


def _probe(code: int, output: str = "") -> dict[str, Any]:
    return {"start": "s", "end": "e", "exit_code": code, "output": output}


def test_the_check_runs_its_command_or_its_string_under_a_shell() -> None:
    assert command_of(_check(command=["pg_isready", "-q"])) == ["pg_isready", "-q"]
    assert command_of(_check(command=["curl -f x || exit 1"], shell=True)) == [
        "/bin/sh",
        "-c",
        "curl -f x || exit 1",
    ]


@pytest.mark.parametrize("status", ["starting", "healthy", "unhealthy"])
def test_a_passing_check_makes_it_healthy_and_ends_the_streak(status: str) -> None:
    after = judge(Health(status, 2), _probe(0, "ok"), _check(), 100.0)
    assert (after.status, after.failing_streak, after.log[-1]["output"]) == ("healthy", 0, "ok")


def test_retries_failures_in_a_row_make_it_unhealthy_from_either_status() -> None:
    check = _check(retries=3)
    for start in ("starting", "healthy"):
        h = Health(start)
        seen = []
        for _ in range(4):
            h = judge(h, _probe(1), check, 100.0)
            seen.append((h.status, h.failing_streak))
        assert seen == [(start, 1), (start, 2), ("unhealthy", 3), ("unhealthy", 4)]


def test_failures_within_the_start_period_do_not_count_while_starting() -> None:
    check = _check(retries=1, start_period_s=10.0)
    assert judge(Health(), _probe(1), check, 9.9) == Health("starting", 0, (_probe(1),))
    assert judge(Health(), _probe(1), check, 10.0).status == "unhealthy"
    # Once healthy, a failure counts even within the start period (Docker's rule).
    assert judge(Health("healthy"), _probe(1), check, 1.0).status == "unhealthy"
    # A timeout (-1) is a failure like any other.
    assert judge(Health(), _probe(-1), _check(retries=1), 0.0).status == "unhealthy"


def test_only_the_newest_checks_are_kept() -> None:
    h = Health()
    for code in range(MAX_LOG + 3):
        h = judge(h, _probe(code), _check(), 0.0)
    assert [p["exit_code"] for p in h.log] == list(range(3, MAX_LOG + 3))


def _running(driver: FakeDriver) -> str:
    driver.images.add("img")
    cid = driver.create(ContainerSpec(name="c", image="img", labels={}))
    driver.start(cid)
    return cid


def test_a_probe_reports_the_exit_code_and_the_start_of_the_output() -> None:
    driver = FakeDriver()
    cid = _running(driver)
    driver.exec_handler = lambda _id, cmd: ExecResult(3, b"x" * (MAX_OUTPUT + 100))
    result = probe(driver, cid, _check(command=["check"], timeout_s=5))
    assert (result["exit_code"], len(result["output"])) == (3, MAX_OUTPUT)
    assert driver.exec_sessions[-1].command == ["check"] and result["start"] <= result["end"]


def test_a_probe_longer_than_its_timeout_fails_with_minus_one() -> None:
    driver = FakeDriver()
    cid = _running(driver)
    release = threading.Event()

    def slow(_id: str, _cmd: list[str]) -> ExecResult:
        release.wait(5)
        return ExecResult(0, b"")

    driver.exec_handler = slow
    t0 = time.monotonic()
    result = probe(driver, cid, _check(timeout_s=0.2))
    release.set()
    assert result["exit_code"] == -1 and "exceeded timeout (0.2s)" in result["output"]
    assert time.monotonic() - t0 < 2


def test_a_probe_that_cannot_run_fails_naming_why() -> None:
    driver = FakeDriver()
    cid = _running(driver)
    driver.stop(cid)
    result = probe(driver, cid, _check())
    assert result["exit_code"] == -1 and "not running" in result["output"]


class _Checks(HealthChecking):
    def __init__(self, driver: FakeDriver) -> None:
        self.driver = driver
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._desired: dict[str, wire.CellAssignment] = {}
        self._observed: dict[str, ContainerInfo] = {}
        self.sent: list[dict[str, Any]] = []

    def _push(self, item: dict[str, Any]) -> None:
        self.sent.append(item)


def _cell(check: dict[str, Any] | None) -> wire.CellAssignment:
    return wire.parse(
        wire.CellAssignment,
        {
            "cell_id": "cel_1",
            "name": "web",
            "project_id": "prj_1",
            "network": "default",
            "image": {"id": "img", "kind": "host"},
            "cpu": 0.5,
            "memory_mb": 64,
            "generation": 4,
            "healthcheck": check,
        },
    )


def _info(cid: str, running: bool = True, started: str | None = "t1") -> ContainerInfo:
    return ContainerInfo(
        id=cid, name="web", labels={}, state="running", running=running, started_at=started
    )


def _statuses(checks: _Checks) -> list[tuple[str, int]]:
    return [(s["health"]["status"], s["health"]["failing_streak"]) for s in checks.sent]


def test_the_checking_pass_runs_each_check_when_due_and_reports_only_changes() -> None:
    driver = FakeDriver()
    cid = _running(driver)
    checks = _Checks(driver)
    codes = iter([1, 1, 0, 0, 1])
    driver.exec_handler = lambda _id, _cmd: ExecResult(next(codes), b"")
    checks._desired = {"cel_1": _cell({"command": ["probe"], "interval_s": 0.1, "retries": 2})}
    checks._observed = {"cel_1": _info(cid)}
    tracked: dict[str, Any] = {}
    with ThreadPoolExecutor(2) as pool:
        t0 = time.monotonic()
        checks._health_pass(tracked, pool, t0)
        assert _statuses(checks) == [("starting", 0)]
        assert checks.sent[0]["cell_id"] == "cel_1" and checks.sent[0]["generation"] == 4
        checks._health_pass(tracked, pool, t0 + 0.05)
        assert tracked["cel_1"].running is None  # not due yet: nothing ran
        for ran in range(1, 6):
            time.sleep(0.12)
            checks._health_pass(tracked, pool, time.monotonic())
            deadline = time.monotonic() + 5
            # Judged (the check ran, its callback done): it may be so before the pass returns.
            while len(tracked["cel_1"].health.log) < ran or tracked["cel_1"].running is not None:
                assert time.monotonic() < deadline, "the due check did not run"
                time.sleep(0.01)
    # The second pass ran nothing; the third check passed (healthy); the fourth changed nothing.
    assert _statuses(checks) == [
        ("starting", 0),
        ("starting", 1),
        ("unhealthy", 2),
        ("healthy", 0),
        ("healthy", 1),
    ]
    assert [p["exit_code"] for p in checks.sent[-1]["health"]["log"]] == [1, 1, 0, 0, 1]


def test_a_new_run_starts_over_and_an_ended_one_is_dropped() -> None:
    driver = FakeDriver()
    checks = _Checks(driver)
    checks._desired = {"cel_1": _cell({"command": ["probe"], "interval_s": 60})}
    checks._observed = {"cel_1": _info("ctr-a")}
    tracked: dict[str, Any] = {}
    with ThreadPoolExecutor(1) as pool:
        checks._health_pass(tracked, pool, 0.0)
        tracked["cel_1"].health = Health("healthy")
        checks._health_pass(tracked, pool, 1.0)  # the same run, a listing without start time
        checks._observed = {"cel_1": _info("ctr-a", started=None)}
        checks._health_pass(tracked, pool, 2.0)
        assert tracked["cel_1"].health.status == "healthy" and len(checks.sent) == 1
        checks._observed = {"cel_1": _info("ctr-a", started="t2")}  # restarted
        checks._health_pass(tracked, pool, 3.0)
        assert tracked["cel_1"].health.status == "starting" and len(checks.sent) == 2
        checks._observed = {"cel_1": _info("ctr-b")}  # made anew
        checks._health_pass(tracked, pool, 4.0)
        assert len(checks.sent) == 3
        checks._observed = {"cel_1": _info("ctr-b", running=False)}
        checks._health_pass(tracked, pool, 5.0)
        assert tracked == {} and len(checks.sent) == 3
        checks._desired = {"cel_1": _cell(None)}  # no check: nothing tracked
        checks._observed = {"cel_1": _info("ctr-b")}
        checks._health_pass(tracked, pool, 6.0)
        assert tracked == {} and len(checks.sent) == 3
    assert driver.exec_sessions == []  # nothing was due


def test_a_paused_containers_check_waits_until_it_is_thawed() -> None:
    driver = FakeDriver()
    checks = _Checks(driver)
    checks._desired = {"cel_1": _cell({"command": ["probe"], "interval_s": 1})}
    checks._observed = {"cel_1": _info("ctr-a")}
    tracked: dict[str, Any] = {}
    with ThreadPoolExecutor(1) as pool:
        checks._health_pass(tracked, pool, 0.0)
        paused = ContainerInfo(
            id="ctr-a", name="web", labels={}, state="paused", running=True, started_at="t1"
        )
        checks._observed = {"cel_1": paused}
        checks._health_pass(tracked, pool, 5.0)  # due, but frozen: no check, still tracked
        assert tracked["cel_1"].running is None and len(checks.sent) == 1
