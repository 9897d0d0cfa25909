"""Identifiers and time for the edges of the system (services, agent); pure code takes them as arguments.

Ids are a resource prefix plus a time-ordered random part, so ordering by id is ordering by creation
(pagination cursors rely on that).
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

__all__ = ["is_id", "new_id", "utcnow"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID = re.compile(r"[a-z]{2,8}-[0-9a-z]{20}")


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


def is_id(value: str) -> bool:
    """Whether `value` has the shape of an id `new_id` makes."""
    return _ID.fullmatch(value) is not None


def utcnow() -> datetime:
    return datetime.now(UTC)
