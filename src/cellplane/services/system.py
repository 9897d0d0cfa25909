"""What the system routes read: database readiness (``/readyz``), cell counts (``/metrics``),
the controllers' leader (``/v1/system/leader``).

Called by :mod:`cellplane.api.routes_system` and :func:`cellplane.api.app.create_app` (which
registers :func:`cell_counts` as the source of the ``cellplane_cells`` gauge), so the API layer
never queries the database itself.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import func, select, text

from cellplane.services.context import Services
from cellplane.state.leadership import read_leader
from cellplane.state.models import Cell

__all__ = ["cell_counts", "database_problem", "leader"]


def cell_counts(svc: Services) -> dict[str, int]:
    """How many cells are in each state, for the metrics gauge."""
    with svc.db.reader() as s:
        rows = s.execute(select(Cell.state, func.count(Cell.id)).group_by(Cell.state)).all()
        return {str(state): int(n) for state, n in rows}


def database_problem(svc: Services) -> str | None:
    """None when the database answers a query; otherwise the name of the error it raised."""
    try:
        with svc.db.reader() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:  # any database failure means not ready
        return type(e).__name__
    return None


def leader(svc: Services) -> dict[str, Any]:
    """Which replica runs the controllers (``GET /v1/system/leader``): the ``leadership`` row,
    and whether the replica answering leads."""
    with svc.db.reader() as s:
        epoch, holder, since = read_leader(s.connection())
    leading = svc.leading
    if svc.db.is_sqlite:  # one server: it always leads, nothing is elected
        holder, leading = holder or svc.replica, True
    return {
        "replica": svc.replica,
        "leading": leading,
        "leader": holder,
        "epoch": epoch,
        "since": since.astimezone(UTC).isoformat() if since is not None else None,
        "database": "sqlite" if svc.db.is_sqlite else "postgresql",
    }
