"""Whether a node the cluster counts as ready still is: the facts of its cell against its record.

Pure. The cluster executor's health pass (:mod:`cellplane.controller.clusters.health`) calls
:func:`node_problem` for every SERVICE_READY node of a RUNNING cluster; the cluster view calls it
too, so that a node whose cell is gone is never shown ready, even before that pass has run.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CellFacts", "node_problem"]


@dataclass(frozen=True)
class CellFacts:
    """What the server knows of a node's cell (from its row, as the agent reported it)."""

    desired_state: str
    state: str
    restarts: int
    message: str | None = None
    #: Why the cell's host is DOWN ("host h1 is DOWN (no heartbeat for 11 s)"), None if it is not.
    host_down: str | None = None


def node_problem(node_state: str, ready_restarts: int | None, cell: CellFacts | None) -> str | None:
    """Why a SERVICE_READY node is not ready any more, or None (also for a node in any other
    state: only a node counted as ready can be lost)."""
    if node_state != "SERVICE_READY":
        return None
    if cell is None:
        return "its cell is gone"
    if cell.desired_state == "DELETED":
        return "its cell is being deleted"
    if cell.host_down is not None:
        return f"its {cell.host_down}"
    detail = f": {cell.message}" if cell.message else ""
    if cell.state == "FAILED":
        return f"its cell failed{detail}"
    if ready_restarts is not None and cell.restarts > ready_restarts:
        return (
            "its container was restarted or recreated since it was found ready (killed, or "
            f"removed outside Cellplane; restarts {ready_restarts} -> {cell.restarts})"
        )
    if cell.state != "RUNNING":
        return f"its cell is {cell.state}{detail}"
    return None
