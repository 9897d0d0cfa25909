"""Agents' heartbeats, written to the database in batches.

Every agent beats every 2 s (`AgentConfig.heartbeat_s`): 500 write transactions a second for a
thousand hosts, each one an `UPDATE hosts SET last_heartbeat` of its own, which took the
database's single write lock away from cell creations and status reports (bench/scale.py). A
server process keeps the beats it received in memory and writes them in one transaction once the
oldest has waited `FLUSH_S` (the beat that finds it due writes them all).

What a host's state is computed from (`hosts.last_heartbeat`) is then at most `FLUSH_S` older
than the last beat while beats arrive; if every agent stops at once, the beats of the last
`FLUSH_S` are not written and hosts look SUSPECT that much earlier (the thresholds are 6 s and
10 s). A beat of a host the process has not seen beat yet is written at once, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

__all__ = ["FLUSH_S", "HeartbeatBuffer"]

FLUSH_S: Final = 1.0


class HeartbeatBuffer:
    def __init__(self, flush_s: float = FLUSH_S, clock: Callable[[], float] = time.monotonic):
        if flush_s < 0:
            raise ValueError(f"flush_s must not be negative, not {flush_s}")
        self.flush_s = flush_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, datetime] = {}
        self._oldest: float | None = None
        self._seen: set[str] = set()

    def seen(self, host_id: str) -> bool:
        """Whether this process wrote a beat of the host already (later ones may wait)."""
        with self._lock:
            return host_id in self._seen

    def written(self, host_id: str) -> None:
        with self._lock:
            self._seen.add(host_id)

    def record(self, host_id: str, at: datetime) -> dict[str, datetime]:
        """Keep a beat; returns the beats to write now (all pending) when the oldest is due,
        else an empty dict."""
        now = self._clock()
        with self._lock:
            self._pending[host_id] = at
            if self._oldest is None:
                self._oldest = now
            if now - self._oldest < self.flush_s:
                return {}
            due, self._pending, self._oldest = self._pending, {}, None
            return due
