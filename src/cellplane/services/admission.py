"""Admission's capacity check ("could any host take this cell now?") without a full snapshot per
request.

`cells.create` asks the scheduler to `explain` a new cell against the hosts before it accepts it.
A full snapshot (`host_views.snapshot`) reads every placed cell's labels and ports: O(cells) of
Python work inside the write transaction, for every create, which made creating N cells O(N^2)
(bench/scale.py: ~35 ms per create at 3,000 cells, most of a create's time under the lock).

Here:
- a request that publishes no host port and has no (anti-)affinity needs no per-cell detail:
  it is explained against the hosts' capacity and usage only (`snapshot(detail=False)`, one SQL
  aggregate), and that view is kept for `TTL_S` seconds per server process, or until the
  controller places cells (`forget`: usage grew);
- an acceptance may come from that recent view (a cell that no longer fits when the controller
  places it waits PENDING with the scheduler's reason, as a cell whose host filled up meanwhile
  always did); a refusal never does: it is confirmed on a fresh view first;
- any other request is explained against a fresh full snapshot, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from cellplane import scheduler

__all__ = ["TTL_S", "AdmissionCache", "explain"]

TTL_S: Final = 1.0

Snapshot = Callable[[bool], list[scheduler.HostSnapshot]]


class AdmissionCache:
    """The hosts' capacity view of one server process, and when it was taken (monotonic)."""

    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._hosts: list[scheduler.HostSnapshot] | None = None
        self._at = 0.0

    def recent(self, now: float) -> list[scheduler.HostSnapshot] | None:
        with self._lock:
            if self._hosts is not None and now - self._at < self.ttl_s:
                return self._hosts
            return None

    def keep(self, hosts: list[scheduler.HostSnapshot], now: float) -> None:
        with self._lock:
            self._hosts, self._at = hosts, now

    def forget(self) -> None:
        """Usage grew (the controller placed cells): the next admission reads afresh."""
        with self._lock:
            self._hosts = None


def _needs_detail(request: scheduler.PlacementRequest) -> bool:
    return bool(request.ports or request.affinity)


def explain(
    cache: AdmissionCache,
    request: scheduler.PlacementRequest,
    snapshot: Snapshot,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Why no host could take `request` now (None: one could). `snapshot(detail)` reads the
    hosts (with or without the cells' labels and ports)."""
    if _needs_detail(request):
        return scheduler.explain(snapshot(True), request)
    tick = clock()
    hosts = cache.recent(tick)
    if hosts is not None and scheduler.explain(hosts, request) is None:
        return None
    fresh = snapshot(False)
    cache.keep(fresh, tick)
    return scheduler.explain(fresh, request)
