"""Identifiers and time for the edges of the system (services, agent); pure code takes them as arguments.

Ids are a resource prefix plus a time-ordered random part, so ordering by id is ordering by creation
(pagination cursors rely on that).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

__all__ = ["new_id", "utcnow"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`<prefix>-<10 chars of milliseconds><10 random chars>`: sortable by creation time."""
    ms = time.time_ns() // 1_000_000
    rnd = int.from_bytes(os.urandom(7), "big")
    return f"{prefix}-{_base36(ms, 9)}{_base36(rnd, 11)}"


def utcnow() -> datetime:
    return datetime.now(UTC)
