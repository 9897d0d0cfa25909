"""PostgreSQL's transaction conflicts, and running a transaction again after one.

PostgreSQL rolls a transaction back when it conflicts with another: a deadlock (two
transactions locking hosts and cells in turn: a status report and a placement), a serialization
failure, a lock it may not wait for. Nothing of it was written, so running it again is safe. The
API answers such a conflict 503 with Retry-After (`api.errors`); the server's own writes that
nobody would retry (heartbeats, status reports) run again here. SQLite serialises its writers
and never raises these.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cellplane.state.models import Cell, Host

__all__ = ["PG_CONFLICTS", "conflicted", "lock_cell_host", "lock_hosts", "retry_conflicts"]

#: SQLSTATEs of a rolled-back conflict: serialization failure, deadlock detected, lock not
#: available.
PG_CONFLICTS: Final = frozenset({"40001", "40P01", "55P03"})

T = TypeVar("T")


def conflicted(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL rolling the transaction back for a conflict."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in PG_CONFLICTS


def retry_conflicts(
    run: Callable[[], T], attempts: int = 4, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`run()` (one whole transaction), again after a conflict, up to `attempts` times in all;
    the last conflict is raised. The waits grow (10, 20, 40 ms, jittered) so the two sides of a
    deadlock do not meet again in step."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    for attempt in range(attempts):
        try:
            return run()
        except DBAPIError as exc:
            if not conflicted(exc) or attempt == attempts - 1:
                raise
        sleep(0.01 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def lock_hosts(s: Session, host_ids: Iterable[str]) -> None:
    """Lock the hosts' rows, in id order, until the transaction ends (PostgreSQL; SQLite's
    writers are serialised anyway).

    Every transaction that writes several hosts' rows, or a host's row and its cells, takes
    them so first: two transactions that lock the same hosts in different orders (a status
    batch of several hosts; a placement bumping the hosts' revisions) deadlock otherwise.
    """
    ids = sorted(set(host_ids))
    if not ids or s.get_bind().dialect.name != "postgresql":
        return
    for k in range(0, len(ids), 500):
        s.execute(
            select(Host.id).where(Host.id.in_(ids[k : k + 500])).order_by(Host.id).with_for_update()
        )


def lock_cell_host(s: Session, cell: Cell, *others: str | None) -> None:
    """Before a change to one cell: lock its host's row (and the `others` hosts' the change
    bumps too: a move's target), then the cell's, and read the cell again (PostgreSQL; a
    no-op on SQLite).

    A status report locks the host and then writes its cells. A change that wrote the cell
    first and then bumped the host's revision took the two in the other order, and the two
    deadlocked: PostgreSQL rolled one back. The cell is read again under its lock because a
    report may have changed it while this waited.
    """
    hosts = [h for h in (cell.host_id, *others) if h is not None]
    if not hosts or s.get_bind().dialect.name != "postgresql":
        return
    lock_hosts(s, hosts)
    s.refresh(cell, with_for_update=True)
