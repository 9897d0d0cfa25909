"""Which DOWN hosts' cells failover must read: once per DOWN transition, again only on a change.

Pure (no I/O, no clock): the caller passes what it read of the hosts. `services.moves.fail_over`
runs every controller pass (1 s). It used to load every cell of every DOWN host on every pass,
in a write transaction, and to note again why each one stays: the reason names the silence's
age ("no heartbeat for 12 s"), so every pass rewrote every such cell with a new event. With
1,000 simulated hosts, a few of them DOWN made that loop a third of the server's work
(docs/scale.md).

A DOWN host is read once when it goes DOWN (`DownMark`: its revision, last beat and revocation
as read then). It is read again only when that mark changes: its revision moves when a cell is
placed on it, taken off it, started, stopped or deleted; its last beat moves when it beats
(it is then no longer DOWN, or DOWN again later: a new transition); a revocation changes why it
is DOWN. A host that is no longer DOWN (READY again, or in maintenance) is forgotten, so its next
DOWN transition is read afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["DownMark", "FailoverMemo"]


@dataclass(frozen=True)
class DownMark:
    """What a DOWN host looked like when its cells were read."""

    revision: int
    last_heartbeat: datetime | None
    revoked_at: datetime | None


class FailoverMemo:
    """The DOWN hosts whose cells were read, with their mark then. One per controller loop (a
    replica that starts leading starts with an empty one)."""

    def __init__(self) -> None:
        self._read: dict[str, DownMark] = {}

    def to_read(self, down: Mapping[str, DownMark]) -> list[str]:
        """The hosts of `down` (every host DOWN now, not in maintenance) whose cells must be
        read: new to DOWN, or changed since read. Forgets the hosts no longer DOWN."""
        for host_id in [h for h in self._read if h not in down]:
            del self._read[host_id]
        return sorted(h for h, mark in down.items() if self._read.get(h) != mark)

    def read(self, host_id: str, mark: DownMark) -> None:
        """The host's cells were read (and handled) when it looked like `mark`."""
        self._read[host_id] = mark

    def __contains__(self, host_id: object) -> bool:
        return host_id in self._read

    def __len__(self) -> int:
        return len(self._read)
