"""Placing cells on hosts, in the caller's transaction: the scheduler's plan for the given
cells on one snapshot of the hosts, written as it decides.

The controller's placement loop (`controller.scheduling`) places every cell that waits for a
host; `docker create` places its one cell with its admission (`dockerapi.containers`), so that
the agent is asked to make the container at once rather than after the loop's next pass. Both
take the placement lock (`cell_batch.lock_placement`: PostgreSQL; SQLite serialises writers),
so two placements never read the same free capacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.services import cell_batch
from cellplane.services import cells as cells_mod
from cellplane.services import hosts as hosts_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.context import Services
from cellplane.state.models import Cell, CellEvent, Task, Volume

__all__ = ["Placed", "place", "place_one"]


@dataclass
class Placed:
    """What a placement wrote: the topics to publish once it is committed; `hosts`: the hosts
    that got cells (admission's cached view of their usage is then stale: `forget` it)."""

    topics: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)

    def committed(self, svc: Services) -> set[str]:
        """After the commit: admission forgets the old usage; the topics to publish."""
        if self.hosts:
            svc.admission.forget()
        return self.topics


def place(svc: Services, s: Session, pending: Sequence[Cell], now: datetime) -> Placed:
    """Place `pending` (cells without a host) where the scheduler says; the ones it cannot place
    keep waiting, with its reason as their message and their task's."""
    out = Placed()
    if not pending:
        return out
    cell_batch.lock_placement(s)  # PostgreSQL: no API batch places on the same view
    vols = {
        (v.project_id, v.name): v
        for v in s.scalars(
            select(Volume).where(Volume.project_id.in_({c.project_id for c in pending}))
        )
    }
    requests = []
    for c in pending:
        bound = {
            vols[(c.project_id, m.get("volume"))].host_id
            for m in c.volumes or []
            if (c.project_id, m.get("volume")) in vols
        } - {None}
        requests.append(cells_mod.placement_request(c, next(iter(bound)) if bound else None))
    # The placed cells' ports and labels (a row per placed cell) only when a request needs
    # them; otherwise the hosts and their usage (one aggregate query) are the whole view.
    detail = any(r.reads_placed_cells() for r in requests)
    snap = cells_mod.with_host_labels(hosts_mod.snapshot(s, svc, now, detail=detail))
    plan = scheduler.place(snap, requests, now=now.timestamp())
    by_id = {c.id: c for c in pending}
    hosts_touched: dict[str, int] = {}
    for pl in plan.placements:
        cell = by_id[pl.request_id]
        if pl.host_id not in hosts_touched:
            hosts_touched[pl.host_id] = cells_mod.bump_host(s, pl.host_id)
        cell.host_id = pl.host_id
        cell.host_rev = hosts_touched[pl.host_id]
        cell.state = "SCHEDULED"
        cell.message = None
        cell.updated_at = now
        for m in cell.volumes or []:
            v = vols.get((cell.project_id, m.get("volume")))
            if v is not None and v.host_id is None:
                v.host_id = pl.host_id
        s.add(CellEvent(cell_id=cell.id, at=now, type="scheduled", message=f"on {pl.host_id}"))
        if cell.task_id:
            task = s.get(Task, cell.task_id)
            if task is not None:
                tasks_mod.advance(task, "SCHEDULE", "COMPLETED", now)
                tasks_mod.advance(task, "PREPARE_IMAGE", "STARTED", now)
                out.topics.add(f"task:{task.id}")
        out.topics.add(f"cell:{cell.id}")
    for un in plan.unplaced:
        cell = by_id[un.request_id]
        if cell.message != un.reason:
            cell.message = un.reason
            s.add(CellEvent(cell_id=cell.id, at=now, type="unschedulable", message=un.reason))
            if cell.task_id:
                task = s.get(Task, cell.task_id)
                if task is not None:
                    tasks_mod.advance(task, "SCHEDULE", "STARTED", now, message=un.reason)
                    out.topics.add(f"task:{task.id}")
    out.hosts = set(hosts_touched)
    out.topics.update(f"host:{h}" for h in hosts_touched)
    return out


def place_one(svc: Services, s: Session, cell_id: str, now: datetime) -> Placed:
    """Place a cell admitted in this transaction (`docker create`)."""
    cell = s.get(Cell, cell_id)
    return place(svc, s, [cell] if cell is not None and cell.host_id is None else [], now)
