"""The placement reconciler: pending cells -> scheduler -> placements on hosts.

Level-triggered: each pass looks at every cell that wants to run (or to be made, `docker
create`) and has no host, whatever woke it (a new cell, a host joining, a periodic tick after a
crash). The scheduler decides (`services.placement`, in the pass's transaction, on the state it
re-reads there), so two passes cannot double-place.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from cellplane.services import capacity, placement
from cellplane.services.context import Services
from cellplane.state.models import Cell

__all__ = ["schedule_pending"]

BATCH = 2000


def schedule_pending(svc: Services, now: datetime) -> set[str]:
    """Place what can be placed; returns the notifier topics to publish after commit."""
    with svc.db.session() as s:
        pending = s.scalars(
            select(Cell)
            .where(Cell.host_id.is_(None), Cell.desired_state.in_(capacity.PLACED_DESIRED))
            .order_by(Cell.id)
            .limit(BATCH)
        ).all()
        placed = placement.place(svc, s, pending, now)
    return placed.committed(svc)
