"""How many engine operations the agent runs at once, found from the engine's own pace.

A constant (8, until this) is right for one machine and engine and wrong for others: on a small
machine every container start is CPU-bound (runc, podman, netavark) and more at once only makes
each slower; on a large one 8 leaves cores idle. Here the number of container creates and starts
under way follows the engine's measured throughput, by hill climbing on it (what the burst bench's
`engine_best` does by hand with its thread-count trials): while the work fills the limit, every
window of completed operations gives a rate (operations per second) at the current limit; a step
that raised the rate by more than `margin` is followed by another in the same direction, one that
lowered it is undone, and a step up that gained nothing is undone too (as fast with fewer at once,
and each operation finishes sooner). Once settled the limit is held, and every `probe_every`
windows a step is tried again, alternately up and down, so a changed engine (more cores, a slower
runtime) moves it. It stays within [`min_limit`, `max_limit`] (the agent's `--parallelism`).

`ThroughputLimit` is pure (completion times in, limit out) and tested on a simulated engine;
`EngineGate` is the agent's gate: the actions that make or start containers take a slot.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = ["ENGINE_WORK", "EngineGate", "ThroughputLimit"]

#: The actions that take a slot: making and starting containers (their pace is the engine's).
#: Stops wait for a cell's stop timeout and removals for its exit; they are not gated.
ENGINE_WORK = frozenset({"CREATE", "START"})


@dataclass
class ThroughputLimit:
    """The limit (`value`), moved by the rate of completed operations (`sample`)."""

    min_limit: int = 1
    max_limit: int = 32
    initial: int = 4
    margin: float = 0.05
    window: int = 16  # operations per window, at least; and `per_slot` per slot of the limit
    per_slot: int = 4
    probe_every: int = 8
    limit: int = field(init=False)
    _step: int = field(default=1, init=False)  # +1 up, -1 down, 0 settled
    _probe_up: bool = field(default=True, init=False)
    _settled: int = field(default=0, init=False)
    _count: int = field(default=0, init=False)
    _since: float | None = field(default=None, init=False)
    _rate: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError(f"limits: need 1 <= min ({self.min_limit}) <= max ({self.max_limit})")
        self.limit = min(max(self.initial, self.min_limit), self.max_limit)

    @property
    def value(self) -> int:
        return self.limit

    def sample(self, now: float, inflight: int) -> int:
        """An operation completed at `now` (seconds, any monotonic clock); `inflight`: the
        operations under way when it started, it included. The new limit."""
        if inflight < self.limit:
            # The work does not fill the limit: its rate is the demand's, not the engine's.
            self._since, self._count = None, 0
            return self.limit
        if self._since is None:
            self._since, self._count = now, 0
            return self.limit
        self._count += 1
        if self._count < max(self.window, self.per_slot * self.limit) or now <= self._since:
            return self.limit
        rate = self._count / (now - self._since)
        self._since, self._count = now, 0
        self._move(rate)
        return self.limit

    def _move(self, rate: float) -> None:
        before, last = self._rate, self._step
        self._rate = rate
        if before is None:
            step = 1  # the first window: try one more at once
        elif rate > before * (1 + self.margin):
            step = last or 1  # better: go on the same way (or up, after a hold)
        elif rate < before * (1 - self.margin):
            step = -last if last else 0  # worse: undo (a change while settled: hold)
        elif last == 1:
            step = -1  # a step up that gained nothing: back down
        else:
            step = 0
        if step == 0:
            self._settled += 1
            if self._settled >= self.probe_every:  # try again: the engine may have changed
                self._settled = 0
                step = 1 if self._probe_up else -1
                self._probe_up = not self._probe_up
        else:
            self._settled = 0
        new = min(max(self.limit + step, self.min_limit), self.max_limit)
        self._step = new - self.limit
        self.limit = new


class EngineGate:
    """At most `limit.value` holders of a slot at once; each completion is a sample of the
    engine's rate (`ThroughputLimit.sample`)."""

    def __init__(
        self,
        limit: ThroughputLimit,
        *,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
        changed: Callable[[int, float], None] | None = None,
    ) -> None:
        self.limit = limit
        self.adaptive = adaptive
        self._clock = clock
        self._changed = changed  # (new limit, the last operation's time): for the log
        self._cv = threading.Condition()
        self._inflight = 0

    @property
    def inflight(self) -> int:
        with self._cv:
            return self._inflight

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cv:
            while self._inflight >= self.limit.value:
                self._cv.wait()
            self._inflight += 1
            inflight = self._inflight
        started = self._clock()
        ok = False
        try:
            yield
            ok = True
        finally:
            ended = self._clock()
            with self._cv:
                self._inflight -= 1
                before = self.limit.value
                # A failed operation says little about the engine's pace: not counted.
                after = self.limit.sample(ended, inflight) if ok and self.adaptive else before
                self._cv.notify(max(1, after - self._inflight))
            if after != before and self._changed is not None:
                self._changed(after, ended - started)

    def call(self, fn: Callable[..., None], *args: object, gated: bool = True) -> None:
        """`fn(*args)` in a slot (`gated`) or as it is: the agent's pool runs every action
        through here, and only those that make or start containers are gated."""
        if not gated:
            fn(*args)
            return
        with self.slot():
            fn(*args)

    @classmethod
    def for_agent(cls, most: int, fixed: bool, log: Callable[..., None]) -> EngineGate:
        """The agent's gate: between 2 and `most` (`--parallelism`), from twice the cores;
        `fixed`: always `most`. Each change of the limit is logged."""
        start = most if fixed else min(most, 2 * (os.cpu_count() or 1))
        # At least two: one slow operation (an image pulled) never holds up every other.
        limit = ThroughputLimit(min_limit=min(2, most), max_limit=most, initial=start)

        def changed(value: int, rtt: float) -> None:
            log("engine concurrency", limit=value, latency_ms=round(rtt * 1000, 1))

        return cls(limit, adaptive=not fixed, changed=changed)
