"""The placement reconciler: pending cells -> scheduler -> placements on hosts.

Level-triggered: each pass looks at every cell that wants to run (or to be made, `docker
create`) and has no host, whatever woke it
(a new cell, a host joining, a periodic tick after a crash). The scheduler decides; this module
re-reads state in the same transaction and commits the plan, so two passes cannot double-place.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from cellplane import scheduler
from cellplane.services import capacity, cell_batch
from cellplane.services import cells as cells_mod
from cellplane.services import hosts as hosts_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.context import Services
from cellplane.state.models import Cell, CellEvent, Task, Volume

__all__ = ["schedule_pending"]

BATCH = 2000


def schedule_pending(svc: Services, now: datetime) -> set[str]:
    """Place what can be placed; returns the notifier topics to publish after commit."""
    topics: set[str] = set()
    with svc.db.session() as s:
        pending = s.scalars(
            select(Cell)
            .where(Cell.host_id.is_(None), Cell.desired_state.in_(capacity.PLACED_DESIRED))
            .order_by(Cell.id)
            .limit(BATCH)
        ).all()
        if not pending:
            return topics
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
                vols[(c.project_id, m["volume"])].host_id
                for m in c.volumes or []
                if (c.project_id, m["volume"]) in vols
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
                v = vols.get((cell.project_id, m["volume"]))
                if v is not None and v.host_id is None:
                    v.host_id = pl.host_id
            s.add(CellEvent(cell_id=cell.id, at=now, type="scheduled", message=f"on {pl.host_id}"))
            if cell.task_id:
                task = s.get(Task, cell.task_id)
                if task is not None:
                    tasks_mod.advance(task, "SCHEDULE", "COMPLETED", now)
                    tasks_mod.advance(task, "PREPARE_IMAGE", "STARTED", now)
                    topics.add(f"task:{task.id}")
            topics.add(f"cell:{cell.id}")
        for un in plan.unplaced:
            cell = by_id[un.request_id]
            if cell.message != un.reason:
                cell.message = un.reason
                s.add(CellEvent(cell_id=cell.id, at=now, type="unschedulable", message=un.reason))
                if cell.task_id:
                    task = s.get(Task, cell.task_id)
                    if task is not None:
                        tasks_mod.advance(task, "SCHEDULE", "STARTED", now, message=un.reason)
                        topics.add(f"task:{task.id}")
        topics.update(f"host:{h}" for h in hosts_touched)
    if hosts_touched:
        svc.admission.forget()  # the hosts' usage grew: admission must not accept on the old
    return topics
