"""Agents' heartbeats, written to the database in batches.

Every agent beats every 2 s (`AgentConfig.heartbeat_s`): 500 write transactions a second for a
thousand hosts, each one an `UPDATE hosts SET last_heartbeat` of its own, which took the
database's single write lock away from cell creations and status reports (bench/scale.py). A
server process keeps the beats it received in memory and writes them in one transaction once the
oldest has waited `FLUSH_S` (the beat that finds it due writes them all).

A host's state is computed from the later of `hosts.last_heartbeat` and the last beat this
process received (`HeartbeatBuffer.heard`), so that liveness does not wait for SQLite's write
lock: under a burst of writes (a service of 1,000 cells, status reports, failover) the batch's
write waited longer than the DOWN threshold and every host looked DOWN (bench/scale.py at 1,000
hosts). Another replica sees the beats it did not receive once they are written, at most
`FLUSH_S` plus the write's wait later. A beat of a host the process has not seen beat yet is
written at once, before it is answered; a batch is written after its beat is answered.

A beat also need not read the host's row to check its token: `VerifiedTokens` remembers, for
`TOKEN_TTL_S`, the digest of each host token this process checked against the database, and the
batch's write is conditional on the digest still being the host's (`WHERE token_hash = ...`).
A host revoked or registered again through this process is forgotten at once; through another
replica, a beat with the old token may still be answered 204 for up to `TOKEN_TTL_S`, but it is
not written (the revocation replaced the digest), so its liveness does not count. At a thousand
hosts beating every 2 s that read was most of a heartbeat's cost (docs/scale.md, part 6).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

__all__ = ["FLUSH_S", "TOKEN_TTL_S", "Beat", "HeartbeatBuffer", "VerifiedTokens"]

FLUSH_S: Final = 1.0
TOKEN_TTL_S: Final = 30.0

#: When a host beat, and the digest of the token it beat with (None: its client certificate,
#: checked by TLS, stood for it).
Beat = tuple[datetime, str | None]


class HeartbeatBuffer:
    def __init__(self, flush_s: float = FLUSH_S, clock: Callable[[], float] = time.monotonic):
        if flush_s < 0:
            raise ValueError(f"flush_s must not be negative, not {flush_s}")
        self.flush_s = flush_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, Beat] = {}
        self._oldest: float | None = None
        # The last beat of each host this process received (seen: written once at least).
        self._heard: dict[str, datetime] = {}

    def seen(self, host_id: str) -> bool:
        """Whether this process wrote a beat of the host already (later ones may wait)."""
        with self._lock:
            return host_id in self._heard

    def written(self, host_id: str, at: datetime) -> None:
        """The host's first beat here was written, at `at`."""
        with self._lock:
            self._heard[host_id] = at

    def heard(self, host_id: str) -> datetime | None:
        """The last beat of the host this process received, written to the database or not:
        a host's liveness does not wait for the write lock (`host_views.host_status`)."""
        with self._lock:
            return self._heard.get(host_id)

    def record(self, host_id: str, at: datetime, digest: str | None = None) -> dict[str, Beat]:
        """Keep a beat; returns the beats to write now (all pending) when the oldest is due,
        else an empty dict."""
        now = self._clock()
        with self._lock:
            self._pending[host_id] = (at, digest)
            self._heard[host_id] = at
            if self._oldest is None:
                self._oldest = now
            if now - self._oldest < self.flush_s:
                return {}
            due, self._pending, self._oldest = self._pending, {}, None
            return due


class VerifiedTokens:
    """Host token digests this process checked against the database, each for `ttl_s`."""

    def __init__(
        self, ttl_s: float = TOKEN_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must not be negative, not {ttl_s}")
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, float]] = {}

    def known(self, host_id: str, digest: str) -> bool:
        with self._lock:
            entry = self._known.get(host_id)
        if entry is None or self._clock() - entry[1] >= self.ttl_s:
            return False
        return hmac.compare_digest(entry[0], digest)

    def remember(self, host_id: str, digest: str) -> None:
        with self._lock:
            self._known[host_id] = (digest, self._clock())

    def forget(self, host_id: str) -> None:
        with self._lock:
            self._known.pop(host_id, None)
