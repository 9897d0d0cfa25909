"""Fencing of the controllers' writes with the leadership epoch (server replicas).

Several server replicas share one PostgreSQL database; one of them, the leader, runs the
controllers (`cellplane.controller.leader`). Each takeover bumps the epoch of the one
``leadership`` row. The leader runs its controllers under :func:`fenced` with the epoch it
took; every transaction they open with `Database.session`/`Database.connection` re-reads the
row ``FOR SHARE`` just before it commits and raises :class:`FencedOut` (the transaction is rolled
back) when the epoch moved on. The share lock makes a takeover's epoch bump wait for a commit
already past the check, so a write either commits before the takeover or not at all; a
transaction idle for longer than ``IDLE_TIMEOUT_S`` (a paused process) is ended by PostgreSQL
itself, so it cannot hold a takeover back for long.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime

from sqlalchemy import Connection, text

__all__ = [
    "IDLE_TIMEOUT_S",
    "FencedOut",
    "bump_epoch",
    "check_fence",
    "current_fence",
    "fenced",
    "read_leader",
]

#: How long PostgreSQL lets a fenced transaction sit idle before it ends its session.
IDLE_TIMEOUT_S = 15

_FENCE: ContextVar[int | None] = ContextVar("cellplane_leader_epoch", default=None)


class FencedOut(RuntimeError):
    """This replica's leadership epoch is no longer the database's: another replica took over."""

    def __init__(self, mine: int, current: int | None) -> None:
        self.mine = mine
        self.current = current
        super().__init__(
            f"leadership epoch {mine} is stale (the database is at {current}): another "
            "replica leads; this controller write was rolled back"
        )


@contextlib.contextmanager
def fenced(epoch: int) -> Iterator[None]:
    """Run the block (and the tasks and threads that copy its context) as leader of ``epoch``."""
    token = _FENCE.set(epoch)
    try:
        yield
    finally:
        _FENCE.reset(token)


def current_fence() -> int | None:
    """The epoch the current context writes under; None outside the controllers."""
    return _FENCE.get()


def begin_fenced(conn: Connection) -> None:
    """At the start of a fenced transaction: PostgreSQL ends it if it idles (a paused leader)."""
    if _FENCE.get() is not None:
        conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_TIMEOUT_S}s'")


def check_fence(conn: Connection) -> None:
    """Before a commit: raise FencedOut unless the row's epoch is still the context's."""
    mine = _FENCE.get()
    if mine is None:
        return
    row = conn.execute(text("SELECT epoch FROM leadership WHERE id = 1 FOR SHARE")).first()
    current = None if row is None else int(row[0])
    if current != mine:
        raise FencedOut(mine, current)


def bump_epoch(conn: Connection, holder: str, now: datetime) -> int:
    """Take over: a new epoch with ``holder``; waits for fenced commits past their check."""
    row = conn.execute(
        text(
            "UPDATE leadership SET epoch = epoch + 1, holder = :holder, since = :now "
            "WHERE id = 1 RETURNING epoch"
        ),
        {"holder": holder, "now": now},
    ).first()
    if row is None:
        raise RuntimeError("the leadership row is missing: run the migrations (0017)")
    return int(row[0])


def read_leader(conn: Connection) -> tuple[int, str | None, datetime | None]:
    """(epoch, holder, since) as the database has them."""
    row = conn.execute(text("SELECT epoch, holder, since FROM leadership WHERE id = 1")).first()
    if row is None:
        return 0, None, None
    return int(row[0]), row[1], row[2]
