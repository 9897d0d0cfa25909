"""`agent.concurrency`: the engine work limit found by hill climbing on the engine's throughput,
tested on a simulated engine (processor sharing on N cores), and the agent's gate."""

from __future__ import annotations

import bisect
import contextlib
import random
import threading
import time
from collections.abc import Callable

import pytest

from cellplane.agent.concurrency import ENGINE_WORK, EngineGate, ThroughputLimit


def simulate(
    limit: ThroughputLimit,
    cores_at: Callable[[float], float],
    ops: int,
    *,
    work: float = 0.04,
    idle: float = 0.005,
    seed: int = 1,
) -> tuple[list[int], list[float]]:
    """An engine whose operations each need `work` CPU-seconds (shared evenly by those under
    way, on `cores_at(t)` cores) and then `idle` seconds without CPU; always more work waiting
    than the limit admits. The limit after each completion, and the completion times."""
    rnd = random.Random(seed)
    t, done = 0.0, 0
    running: list[list[float]] = []  # [CPU left, idle left, in flight at its start]
    limits: list[int] = []
    times: list[float] = []
    while done < ops:
        while len(running) < limit.value:
            running.append([work * rnd.uniform(0.8, 1.2), idle, len(running) + 1])
        on_cpu = [r for r in running if r[0] > 0]
        speed = min(1.0, cores_at(t) / len(on_cpu)) if on_cpu else 0.0
        dt = min([r[0] / speed for r in on_cpu] + [r[1] for r in running if r[0] <= 0])
        t += dt
        for r in running:
            if r[0] > 0:
                r[0] -= dt * speed
            else:
                r[1] -= dt
        for r in [r for r in running if r[0] <= 1e-12 and r[1] <= 1e-12]:
            running.remove(r)
            done += 1
            limits.append(limit.sample(t, int(r[2])))
            times.append(t)
    return limits, times


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
def test_the_limit_settles_just_above_what_the_cores_absorb(cores: int) -> None:
    limit = ThroughputLimit(min_limit=1, max_limit=32, initial=4)
    limits, times = simulate(limit, lambda t: cores, 5000)
    tail = limits[1500:]
    mean = sum(tail) / len(tail)
    assert cores <= mean + 0.5 and mean <= cores + 2.5, (cores, mean)
    rate = (len(times) - 1500) / (times[-1] - times[1499])
    best = cores / 0.04  # the engine's throughput when no core idles
    assert rate >= 0.9 * best, (rate, best)


def test_a_fixed_8_is_as_fast_on_two_cores_only_slower_per_operation() -> None:
    """What the constant did: the same throughput (CPU-bound), each operation ~3x longer."""
    fixed = ThroughputLimit(min_limit=8, max_limit=8, initial=8)
    _, t_fixed = simulate(fixed, lambda t: 2, 3000)
    found = ThroughputLimit(min_limit=1, max_limit=32, initial=4)
    limits, t_found = simulate(found, lambda t: 2, 3000)
    assert t_found[-1] <= t_fixed[-1] * 1.1
    assert sum(limits[1000:]) / len(limits[1000:]) < 5


def test_the_limit_follows_an_engine_that_gets_more_cores() -> None:
    limit = ThroughputLimit(min_limit=1, max_limit=32, initial=4)
    limits, times = simulate(limit, lambda t: 2 if t < 30 else 8, 9000)
    switch = bisect.bisect(times, 30.0)
    before = limits[switch - 300 : switch]
    after = limits[-1500:]
    assert sum(before) / len(before) < 5.5
    assert sum(after) / len(after) >= 7.5


def test_the_limit_stays_within_its_bounds() -> None:
    capped = ThroughputLimit(min_limit=1, max_limit=3, initial=3)
    limits, _ = simulate(capped, lambda t: 8, 2000)
    assert max(limits) <= 3  # more would help: it stays at its maximum but for its probes
    assert sum(limits[500:]) / len(limits[500:]) > 2.8
    floored = ThroughputLimit(min_limit=2, max_limit=16, initial=8)
    limits, _ = simulate(floored, lambda t: 1, 3000)
    assert min(limits) >= 2


def test_work_that_does_not_fill_the_limit_teaches_nothing() -> None:
    limit = ThroughputLimit(min_limit=1, max_limit=32, initial=6)
    for i in range(500):
        assert limit.sample(i * 0.01, 3) == 6  # three at a time under a limit of six


def test_where_more_at_once_gains_nothing_the_limit_falls_and_keeps_probing() -> None:
    """A rate that does not depend on the limit (a serial engine): fewer at once is as fast and
    each operation finishes sooner, so the limit goes down to its floor, and settled there it
    still tries one more every `probe_every` windows (and takes it back)."""
    limit = ThroughputLimit(min_limit=1, max_limit=32, initial=4, window=4, probe_every=3)
    seen = []
    t = 0.0
    for _ in range(3000):
        t += 0.01
        seen.append(limit.sample(t, limit.value))
    assert max(seen) == 5 and seen[-400:].count(1) > 300
    assert 2 in seen[-400:]  # the probes up, undone


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="min"):
        ThroughputLimit(min_limit=0)
    with pytest.raises(ValueError, match="min"):
        ThroughputLimit(min_limit=5, max_limit=4)
    assert ThroughputLimit(min_limit=2, max_limit=6, initial=99).value == 6


def _run_many(gate: EngineGate, n: int, gated: bool = True, fail: bool = False) -> int:
    """`n` threads each hold the gate ~20 ms; the most seen at once."""
    lock = threading.Lock()
    now = [0]
    most = [0]

    def work() -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        if fail:
            raise RuntimeError("the engine refused")

    def one() -> None:
        with contextlib.suppress(RuntimeError):
            gate.call(work, gated=gated)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    return most[0]


def test_the_gate_admits_at_most_its_limit_and_ungated_work_passes() -> None:
    gate = EngineGate(ThroughputLimit(min_limit=2, max_limit=2, initial=2))
    assert _run_many(gate, 6) == 2
    assert gate.inflight == 0
    assert _run_many(gate, 6, gated=False) > 2
    assert {"CREATE", "START"} == ENGINE_WORK


class _Counting(ThroughputLimit):
    calls = 0

    def sample(self, now: float, inflight: int) -> int:
        self.calls += 1
        return super().sample(now, inflight)


def test_failed_work_and_a_fixed_gate_are_not_sampled() -> None:
    failing = _Counting(min_limit=1, max_limit=4, initial=4)
    _run_many(EngineGate(failing), 4, fail=True)
    assert failing.calls == 0
    fixed = _Counting(min_limit=1, max_limit=4, initial=4)
    _run_many(EngineGate(fixed, adaptive=False), 4)
    assert fixed.calls == 0 and fixed.value == 4
    sampled = _Counting(min_limit=1, max_limit=4, initial=4)
    _run_many(EngineGate(sampled), 4)
    assert sampled.calls == 4


def test_the_agents_gate_starts_at_twice_the_cores_or_is_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    logged: list[dict[str, object]] = []
    gate = EngineGate.for_agent(16, False, lambda msg, **kw: logged.append(kw))
    assert gate.limit.value == 4 and gate.adaptive and gate.limit.max_limit == 16
    assert gate.limit.min_limit == 2
    fixed = EngineGate.for_agent(8, True, lambda msg, **kw: None)
    assert fixed.limit.value == 8 and not fixed.adaptive
    assert EngineGate.for_agent(3, False, lambda msg, **kw: None).limit.value == 3
