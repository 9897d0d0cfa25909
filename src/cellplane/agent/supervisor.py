"""The agent supervises its own container engine: a dead engine is restarted, with backoff.

Containers run under conmon and outlive the engine's service process, so a restarted engine finds
them again (same ids) and the agent simply carries on. While the engine is down the agent tells the
server (the host then takes no new cells) and pauses its reconcile passes; when the engine is back
it resumes at once.

`EngineWatch` is the pure decision (observations and times in, a decision out, unit-tested);
`EngineSupervisor` runs it on a thread against a `SupervisedEngine` (`drivers.engine.PodmanService`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

__all__ = [
    "EngineHealth",
    "EngineSupervisor",
    "EngineWatch",
    "SupervisedEngine",
]

log = structlog.get_logger("cellplane.agent.engine")

# A live process whose answers are this late is not yet taken for a dead engine (a busy engine
# answers slowly); one that does not answer for HUNG_S is killed and started again.
GRACE_S = 2.0
HUNG_S = 60.0
RESTART_BACKOFF_START_S = 0.5
RESTART_BACKOFF_CAP_S = 30.0
# An engine that stayed up this long after a restart starts the backoff afresh.
STABLE_S = 60.0


class SupervisedEngine(Protocol):
    """What the supervisor needs of an engine service (`PodmanService` has it)."""

    def start(self, timeout: float = 20.0) -> str: ...

    def running(self) -> bool: ...

    def answers(self, timeout: float = 1.0) -> bool: ...

    def exit_description(self) -> str: ...

    def kill(self) -> None: ...


@dataclass(frozen=True)
class EngineHealth:
    """The engine as the agent reports it: up or down, why, since when (unix time)."""

    up: bool
    message: str | None
    since: float
    restarts: int = 0

    def report(self) -> dict[str, Any]:
        """As the ``engine`` of a registration or status report (`wire.EngineHealthReport`)."""
        return {
            "state": "UP" if self.up else "DOWN",
            "message": self.message,
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(),
            "restarts": self.restarts,
        }


NONE = "none"
RESTART = "restart"
KILL_AND_RESTART = "kill-and-restart"


@dataclass
class EngineWatch:
    """Pure: fed one observation at a time (`observe`), says what to do about the engine.

    Decisions: NONE, RESTART (the process is gone), KILL_AND_RESTART (alive but silent for
    `hung_s`). Restart attempts back off from `backoff_start_s` (the first one is immediate),
    doubling up to `backoff_cap_s`; an engine that stays up `stable_s` resets the backoff.
    """

    grace_s: float = GRACE_S
    hung_s: float = HUNG_S
    backoff_start_s: float = RESTART_BACKOFF_START_S
    backoff_cap_s: float = RESTART_BACKOFF_CAP_S
    stable_s: float = STABLE_S
    up: bool = True
    message: str | None = None
    changed_at: float = 0.0
    failing_since: float | None = None
    attempts: int = 0  # restart attempts since the engine was last stable
    next_attempt_at: float = 0.0

    def observe(self, now: float, alive: bool, answers: bool, exit_description: str = "") -> str:
        if answers:
            self.failing_since = None
            if not self.up:
                self.up, self.message, self.changed_at = True, None, now
            if self.attempts and now - self.changed_at >= self.stable_s:
                self.attempts = 0
            return NONE
        if self.failing_since is None:
            self.failing_since = now
        silent = now - self.failing_since
        if alive and silent < self.grace_s:
            return NONE  # slow, not dead (yet)
        if self.up:
            self.up, self.changed_at = False, now
            self.message = (
                f"podman service not answering for {silent:.0f} s"
                if alive
                else f"podman service process died ({exit_description or 'gone'})"
            )
        if alive and silent < self.hung_s:
            return NONE
        if now < self.next_attempt_at:
            return NONE
        self.next_attempt_at = now + self.backoff_for_next()
        self.attempts += 1
        return KILL_AND_RESTART if alive else RESTART

    def backoff_for_next(self) -> float:
        """The wait after the attempt about to be made, before the one after it."""
        return float(min(self.backoff_cap_s, self.backoff_start_s * 2**self.attempts))

    def restart_failed(self, error: str) -> None:
        self.message = f"{self.message or 'engine down'}; restart failed: {error}"[:2000]


class EngineSupervisor:
    """Checks the engine every `interval` seconds; restarts it; tells `on_change` what it sees."""

    def __init__(
        self,
        engine: SupervisedEngine,
        on_change: Callable[[EngineHealth], None],
        *,
        interval: float = 0.5,
        watch: EngineWatch | None = None,
    ) -> None:
        self.engine = engine
        self.on_change = on_change
        self.interval = interval
        self.watch = watch or EngineWatch()
        self.restarts = 0
        self._health = EngineHealth(True, None, time.time())

    @property
    def health(self) -> EngineHealth:
        return self._health

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.check_once()
            except Exception:
                log.exception("engine check failed")

    def check_once(self) -> None:
        alive = self.engine.running()
        answers = alive and self.engine.answers(1.0)
        exit_description = "" if alive else self.engine.exit_description()
        decision = self.watch.observe(time.monotonic(), alive, answers, exit_description)
        self._publish()
        if decision == NONE:
            return
        log.warning("restarting the engine", reason=self.watch.message, attempt=self.watch.attempts)
        if decision == KILL_AND_RESTART:
            self.engine.kill()
        try:
            self.engine.start()
        except Exception as e:  # the next check tries again, after the backoff
            log.warning("engine restart failed", error=str(e))
            self.watch.restart_failed(str(e))
            self._publish()
            return
        self.restarts += 1
        log.info("engine restarted", restarts=self.restarts)
        self.watch.observe(time.monotonic(), True, self.engine.answers(2.0))
        self._publish()

    def _publish(self) -> None:
        w = self.watch
        h = self._health
        if (w.up, w.message) == (h.up, h.message) and self.restarts == h.restarts:
            return
        since = h.since if w.up == h.up else time.time()
        self._health = EngineHealth(w.up, w.message, since, self.restarts)
        self.on_change(self._health)
