"""Admission's capacity check on a recent view of the hosts (`services.admission`)."""

from __future__ import annotations

from cellplane import scheduler
from cellplane.services.admission import AdmissionCache, explain


def host(cpu_used: float, port: int | None = None) -> scheduler.HostSnapshot:
    return scheduler.HostSnapshot(
        id="hst-1",
        state="READY",
        capacity=scheduler.Resources(4.0, 4096, 100),
        used=scheduler.Resources(cpu_used, 0, 0),
        used_ports=frozenset({("tcp", port)}) if port else frozenset(),
    )


def request(cpu: float, port: int | None = None) -> scheduler.PlacementRequest:
    return scheduler.PlacementRequest(
        id="cel-1",
        resources=scheduler.Resources(cpu, 64, 0),
        ports=frozenset({("tcp", port)}) if port else frozenset(),
    )


class Reader:
    """Counts the snapshots taken; `used` is the hosts' CPU in use at the next one."""

    def __init__(self, used: float, port: int | None = None) -> None:
        self.used, self.port = used, port
        self.calls: list[bool] = []

    def __call__(self, detail: bool) -> list[scheduler.HostSnapshot]:
        self.calls.append(detail)
        return [host(self.used, self.port if detail else None)]


def test_acceptances_within_the_ttl_share_one_snapshot() -> None:
    cache, read, t = AdmissionCache(ttl_s=1.0), Reader(0.0), [100.0]
    for _ in range(5):
        assert explain(cache, request(1.0), read, clock=lambda: t[0]) is None
    assert read.calls == [False]  # one aggregate snapshot, no per-cell detail
    t[0] += 1.5
    assert explain(cache, request(1.0), read, clock=lambda: t[0]) is None
    assert read.calls == [False, False]  # expired: read again


def test_a_refusal_is_confirmed_on_a_fresh_snapshot() -> None:
    cache, read = AdmissionCache(ttl_s=60.0), Reader(3.5)
    assert explain(cache, request(0.1), read, clock=lambda: 0.0) is None
    # The cached view says 0.4 cores are free; a fresh one says the host was emptied meanwhile.
    read.used = 0.0
    assert explain(cache, request(2.0), read, clock=lambda: 1.0) is None
    assert len(read.calls) == 2
    # And a request that fits nowhere is refused, naming why, after a fresh look.
    reason = explain(cache, request(8.0), read, clock=lambda: 2.0)
    assert reason is not None and "cpu" in reason.lower()
    assert len(read.calls) == 3


def test_a_request_with_ports_or_affinity_is_always_read_in_full() -> None:
    cache, read = AdmissionCache(ttl_s=60.0), Reader(0.0, port=8080)
    assert explain(cache, request(0.1), read, clock=lambda: 0.0) is None
    reason = explain(cache, request(0.1, port=8080), read, clock=lambda: 0.0)
    assert reason is not None and "8080" in reason
    assert read.calls == [False, True]


def test_forget_makes_the_next_admission_read_afresh() -> None:
    cache, read = AdmissionCache(ttl_s=60.0), Reader(0.0)
    assert explain(cache, request(3.0), read, clock=lambda: 0.0) is None
    read.used = 3.0  # the controller placed cells meanwhile
    cache.forget()
    reason = explain(cache, request(3.0), read, clock=lambda: 1.0)
    assert reason is not None and len(read.calls) == 2
