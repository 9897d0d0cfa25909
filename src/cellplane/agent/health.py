"""Health checks of the cells' running containers (Docker's HEALTHCHECK), run by the agent.

A cell with a `healthcheck` has its command run inside its running container every
`interval_s` seconds, the first one `interval_s` after the container started (Docker's order).
`judge` is Docker's rule, pure: a check that exits 0 makes the cell healthy and ends a failing
streak; any other end (a timeout counts, as exit -1) lengthens the streak, and `retries` failures
in a row make it unhealthy, except while it is still `starting` within `start_period_s`. The newest
5 checks are kept, each with the first 4 KiB of its output.

`HealthChecking` is a base of `agent.runner.Agent` (over `agent.reporting.Reporter`): its thread
runs the checks in a small pool of their own, so a slow check never holds up the agent's actions,
and sends a cell's health to the server only when its status or failing streak changes (a healthy
cell's passing checks cost no traffic). A new container (a restart, a new start) starts over at
`starting`. The check runs through the engine (`Driver.exec_open`), the way `docker exec` does, so
it works the same on every isolation class.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from cellplane.agent.reporting import Reporter
from cellplane.drivers.base import ContainerInfo, Driver
from cellplane.wire import agent_plain as wire

__all__ = ["MAX_LOG", "MAX_OUTPUT", "Health", "HealthChecking", "command_of", "judge"]

log = structlog.get_logger("cellplane.agent")

MAX_LOG = 5  # checks kept, as Docker keeps
MAX_OUTPUT = 4096  # bytes of a check's output kept, as Docker keeps
_WORKERS = 4
_TICK_S = 0.5  # how often the running cells are looked at again


@dataclass(frozen=True)
class Health:
    """One cell's health: starting | healthy | unhealthy, failures in a row, the newest checks."""

    status: str = "starting"
    failing_streak: int = 0
    log: tuple[dict[str, Any], ...] = ()

    def report(self) -> dict[str, Any]:
        return {"status": self.status, "failing_streak": self.failing_streak, "log": list(self.log)}


def command_of(check: wire.HealthCheck) -> list[str]:
    """The argv the check runs: its command, or its one string under `/bin/sh -c`."""
    return ["/bin/sh", "-c", check.command[0]] if check.shell else list(check.command)


def judge(health: Health, probe: dict[str, Any], check: wire.HealthCheck, run_s: float) -> Health:
    """The health after `probe` ({start, end, exit_code, output}), which began `run_s` seconds
    after the container started."""
    newest = (*health.log, probe)[-MAX_LOG:]
    if probe["exit_code"] == 0:
        return Health("healthy", 0, newest)
    if health.status == "starting" and run_s < check.start_period_s:
        return Health(health.status, health.failing_streak, newest)  # not counted yet
    streak = health.failing_streak + 1
    return Health("unhealthy" if streak >= check.retries else health.status, streak, newest)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def probe(driver: Driver, container_id: str, check: wire.HealthCheck) -> dict[str, Any]:
    """Run the check once in the container: {start, end, exit_code, output}; exit -1 when it
    ran longer than `timeout_s` (it is left to end in the container) or could not run."""
    start = _now_iso()
    result: dict[str, Any] = {}

    def run() -> None:
        session = driver.exec_open(container_id, command_of(check))
        result["session"] = session
        out = bytearray()
        while (chunk := session.read()) is not None:
            if len(out) < MAX_OUTPUT:
                out += chunk[1][: MAX_OUTPUT - len(out)]
        code = session.exit_code()
        result["output"] = session.failure or out.decode("utf-8", "replace")
        result["exit_code"] = -1 if code is None else code
        session.close()

    worker = threading.Thread(target=_guarded(run, result), name="cp-health-probe", daemon=True)
    worker.start()
    worker.join(check.timeout_s)
    if worker.is_alive():
        session = result.get("session")
        if session is not None:
            session.close()  # wakes its reader; the command may go on in the container
        code, output = -1, f"Health check exceeded timeout ({check.timeout_s:g}s)"
    elif "error" in result:
        code, output = -1, f"the check could not run: {result['error']}"
    else:
        code, output = result["exit_code"], result["output"]
    return {"start": start, "end": _now_iso(), "exit_code": code, "output": output}


def _guarded(fn: Callable[[], None], result: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception as exc:  # the driver's errors and the transport's alike
            result["error"] = str(exc) or type(exc).__name__

    return run


@dataclass
class _Tracked:
    container_id: str
    started_at: str | None
    check: wire.HealthCheck
    generation: int
    started: float  # monotonic, when the agent saw it start
    due: float
    health: Health = field(default_factory=Health)
    running: Future[dict[str, Any]] | None = None


class HealthChecking(Reporter):
    """The health-check thread, whose reports go out with the others (`Reporter._push`); the
    agent sets these attributes up."""

    driver: Driver
    _lock: threading.Lock
    _desired: dict[str, wire.CellAssignment]
    _observed: dict[str, ContainerInfo]

    def _health_loop(self) -> None:
        tracked: dict[str, _Tracked] = {}
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="cp-health") as pool:
            while not self._stop.wait(_TICK_S):
                try:
                    self._health_pass(tracked, pool, time.monotonic())
                except Exception:
                    log.exception("health checks failed")

    def _checked(self) -> list[tuple[wire.CellAssignment, ContainerInfo]]:
        with self._lock:
            return [
                (cell, info)
                for cid, cell in self._desired.items()
                if cell.healthcheck is not None
                and (info := self._observed.get(cid)) is not None
                and info.running
            ]

    def _health_pass(
        self, tracked: dict[str, _Tracked], pool: ThreadPoolExecutor, now: float
    ) -> None:
        running = {cell.cell_id: (cell, info) for cell, info in self._checked()}
        for cid, t in list(tracked.items()):
            cell_info = running.get(cid)
            if cell_info is None or not _same_run(t, *cell_info):
                del tracked[cid]  # ended, or started anew (below)
        for cid, (cell, info) in running.items():
            known = tracked.get(cid)
            if known is None:
                assert cell.healthcheck is not None
                fresh = _Tracked(
                    container_id=info.id,
                    started_at=info.started_at,
                    check=cell.healthcheck,
                    generation=cell.generation,
                    started=now,
                    due=now + cell.healthcheck.interval_s,
                )
                tracked[cid] = fresh
                self._send_health(cid, fresh)
            elif known.running is None and known.due <= now and info.state != "paused":
                self._check(tracked, cid, known, pool)

    def _check(
        self, tracked: dict[str, _Tracked], cid: str, t: _Tracked, pool: ThreadPoolExecutor
    ) -> None:
        def judged(done: Future[dict[str, Any]]) -> None:
            self._judged(tracked, cid, t, done)

        t.running = pool.submit(probe, self.driver, t.container_id, t.check)
        t.running.add_done_callback(judged)

    def _judged(
        self, tracked: dict[str, _Tracked], cid: str, t: _Tracked, done: Future[dict[str, Any]]
    ) -> None:
        if tracked.get(cid) is not t:
            return  # its container ended or started anew meanwhile
        if done.cancelled() or done.exception() is not None:
            t.running, t.due = None, time.monotonic() + t.check.interval_s  # try again later
            return
        result = done.result()
        ran_at = time.monotonic() - t.started
        before = t.health
        t.health = judge(before, result, t.check, ran_at)
        t.due = time.monotonic() + t.check.interval_s
        t.running = None
        if (t.health.status, t.health.failing_streak) != (before.status, before.failing_streak):
            self._send_health(cid, t)

    def _send_health(self, cid: str, t: _Tracked) -> None:
        self._push({"cell_id": cid, "generation": t.generation, "health": t.health.report()})


def _same_run(t: _Tracked, cell: wire.CellAssignment, info: ContainerInfo) -> bool:
    """Whether `info` is still the run `t` checks: the same container, not started since, the
    same check."""
    restarted = bool(t.started_at and info.started_at and info.started_at != t.started_at)
    if info.started_at and not t.started_at:
        t.started_at = info.started_at  # a listing did not know it; an inspection does
    return info.id == t.container_id and not restarted and cell.healthcheck == t.check
