"""Cells that change host: failover off a DOWN host, an operator's move, a host's drain.

A cell changes host by being assigned anew: its `generation` is bumped (the old host's agent
takes any container of an older generation for stale and removes it), the host it leaves gets
its `departed_revision` set (its agent's next view is a full one, without the cell), and the
cell is either placed at once on the named host (`move`) or left to the scheduler (failover,
drain: host_id None, state PENDING).

Failover (`fail_over`, run by the controller on every pass): every cell of a DOWN host that
should run and whose restart policy allows a restart (`always`, `on-failure`) is rescheduled;
the host is then *fenced*: it is not READY again before its agent has confirmed, from a full
view, that no container of a cell that left is running there (`services.hosts.host_status`).
A cell whose volume lives on the DOWN host stays, with the reason: the data is there and is
never recreated empty elsewhere. Cells of clusters (pinned to a host by the cluster's
placement) are left to the cluster's own health handling.

A cell whose volume lives on its host moves with its data (`services.volume_moves`: stopped,
copied agent to agent and verified, then started on the new host); its volume's host must be
reachable, so a cell whose volume is on a DOWN host stays there, reported unavailable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.errors import Conflict, InsufficientCapacity, NotFound
from cellplane.ids import new_id, utcnow
from cellplane.services import hosts as hosts_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services import volume_moves
from cellplane.services.capacity import PLACED_DESIRED
from cellplane.services.cell_mounts import volume_names
from cellplane.services.cells import (
    bump_host,
    check_project,
    placement_request,
    with_host_labels,
)
from cellplane.services.context import Principal, Services
from cellplane.services.failover_memo import DownMark, FailoverMemo
from cellplane.services.idempotency import Outcome
from cellplane.state.conflicts import lock_cell_host
from cellplane.state.models import Cell, CellEvent, Host, Task, Volume

__all__ = [
    "DRAIN_KIND",
    "MOVE_KIND",
    "drain",
    "drain_progress",
    "fail_over",
    "move",
    "unmovable_reason",
]

MOVE_KIND = volume_moves.MOVE_KIND
DRAIN_KIND = "DRAIN_HOST"
# Restart policies under which a cell is rescheduled when its host is lost.
FAILOVER_POLICIES = frozenset({"always", "on-failure"})


def _host(s: Session, ref: str) -> Host:
    h = s.get(Host, ref) or s.scalar(select(Host).where(Host.name == ref))
    if h is None:
        raise NotFound(f"host {ref!r} does not exist")
    return h


def _volumes_on(s: Session, cell: Cell) -> list[Volume]:
    names = volume_names(cell.volumes)
    if not names:
        return []
    return list(
        s.scalars(
            select(Volume).where(Volume.project_id == cell.project_id, Volume.name.in_(names))
        )
    )


def bound_volumes(s: Session, cell: Cell) -> list[Volume]:
    """The cell's volumes that live on its host (its data is there)."""
    return [v for v in _volumes_on(s, cell) if v.host_id is not None and v.host_id == cell.host_id]


def unmovable_reason(s: Session, cell: Cell) -> str | None:
    """Why `cell` cannot leave its host (None when it can, its volumes copied if it has any)."""
    if cell.pinned_host_id is not None:
        return "it is a cluster node, placed with its cluster's policies"
    return None


def _names(vols: Sequence[Volume]) -> str:
    return ", ".join(repr(v.name) for v in vols)


def leave(s: Session, cell: Cell, now: datetime) -> str:
    """Take `cell` off its host (bumping the host's revision and departure); returns the host."""
    old = cell.host_id
    assert old is not None
    rev = bump_host(s, old)
    host = s.get(Host, old)
    if host is not None:
        host.departed_revision = rev
    cell.generation = (cell.generation or 1) + 1
    cell.container_id = None
    cell.address = None
    cell.exit_code = None
    cell.updated_at = now
    return old


def _unassign(s: Session, cell: Cell, now: datetime, event: str, why: str) -> None:
    leave(s, cell, now)
    cell.host_id = None
    cell.host_rev = 0
    cell.state = "PENDING" if cell.desired_state in PLACED_DESIRED else "STOPPED"
    cell.message = why
    s.add(CellEvent(cell_id=cell.id, at=now, type=event, message=why))


# --- failover --------------------------------------------------------------------------------


def _note(s: Session, cell: Cell, now: datetime, event: str, why: str) -> None:
    """Say once why the cell stays on its lost host."""
    if cell.message != why:
        cell.message = why
        cell.updated_at = now
        s.add(CellEvent(cell_id=cell.id, at=now, type=event, message=why))


def _down_marks(svc: Services, s: Session, now: datetime) -> tuple[bool, dict[str, DownMark]]:
    """Whether any host is READY, and the mark of every DOWN host not in maintenance."""
    ready = False
    down: dict[str, DownMark] = {}
    for host in s.scalars(select(Host)):
        state, _ = hosts_mod.host_status(host, now, svc)
        ready = ready or state == "READY"
        if state == "DOWN" and not host.maintenance:
            down[host.id] = _mark(host)
    return ready, down


def _mark(host: Host) -> DownMark:
    return DownMark(host.revision, host.last_heartbeat, host.revoked_at)


def fail_over(
    svc: Services,
    now: datetime,
    *,
    watching_since: datetime | None = None,
    memo: FailoverMemo | None = None,
) -> set[str]:
    """Reschedule the movable cells of DOWN hosts; returns the topics to publish.

    Nothing moves while no host is READY (a server cut off from every host, or all of them
    down, has nowhere to put the cells: moving them would only restart them all once the hosts
    are back), nor before the caller has watched heartbeats for the DOWN threshold
    (`watching_since`: a server that was itself down sees every host silent when it starts).

    The hosts are read without the write lock; the cells of a DOWN host are read (and the
    write lock taken) once per DOWN transition, and again only when the host changed since
    (`memo`, kept by the controller loop across passes: `services.failover_memo`). Without a
    memo every DOWN host's cells are read.
    """
    topics: set[str] = set()
    if watching_since is not None and (now - watching_since).total_seconds() < svc.heartbeat_down_s:
        return topics
    with svc.db.reader() as s:
        ready, down = _down_marks(svc, s, now)
    if not ready:
        return topics
    memo = FailoverMemo() if memo is None else memo
    todo = memo.to_read(down)
    if not todo:
        return topics
    marks: dict[str, DownMark] = {}
    with svc.db.session() as s:
        for host_id in todo:
            host = s.get(Host, host_id)
            if host is None:
                continue
            state, reason = hosts_mod.host_status(host, now, svc)
            if state != "DOWN" or host.maintenance:
                continue  # back (or in maintenance) since it was read: not DOWN any more
            topics |= _fail_over_host(s, host, f"host {host.name} is DOWN ({reason})", now)
            s.flush()
            rev = s.scalar(select(Host.revision).where(Host.id == host.id))
            marks[host.id] = DownMark(int(rev or 0), host.last_heartbeat, host.revoked_at)
    for host_id, mark in marks.items():  # committed: read for this transition
        memo.read(host_id, mark)
    return topics


def _fail_over_host(s: Session, host: Host, lost: str, now: datetime) -> set[str]:
    """Reschedule the movable cells of one DOWN host; note why the others stay."""
    topics: set[str] = set()
    cells = s.scalars(
        select(Cell)
        .where(
            Cell.host_id == host.id,
            Cell.desired_state.in_(PLACED_DESIRED),  # made by `docker create` too: made again
            Cell.ended_at.is_(None),
        )
        .order_by(Cell.id)
    ).all()
    moved = 0
    for cell in cells:
        if cell.restart_policy not in FAILOVER_POLICIES:
            _note(s, cell, now, "host-down", f"{lost}; restart policy never: not moved")
            continue
        stays = unmovable_reason(s, cell)
        vols = bound_volumes(s, cell)
        if vols:
            stays = (
                f"its volume {_names(vols)} lives there: unavailable until the host is "
                "back (the data is never recreated empty elsewhere)"
            )
        if stays is not None:
            _note(s, cell, now, "unavailable", f"{lost}; the cell stays: {stays}")
            continue
        _unassign(
            s,
            cell,
            now,
            "failover",
            f"{lost}: rescheduling on a READY host (generation {cell.generation + 1})",
        )
        topics.add(f"cell:{cell.id}")
        moved += 1
    if moved:
        host.fence_revision = host.revision
        topics.update({"controller", f"host:{host.id}"})
    return topics


# --- move ------------------------------------------------------------------------------------


def move(svc: Services, s: Session, principal: Principal, cell_id: str, to: str) -> Outcome:
    """Move a cell to host `to` now: checked to fit there, its old container removed."""
    now = utcnow()
    cell = s.get(Cell, cell_id)
    if cell is None:
        raise NotFound(f"cell {cell_id!r} does not exist")
    project = check_project(s, principal, cell.project_id, "cells:write", f"cell {cell_id!r}")
    target = _host(s, to)
    lock_cell_host(s, cell, target.id)  # both hosts' rows before the cell's, as reports do
    if cell.desired_state == "DELETED":
        raise Conflict(f"cell {cell.name!r} is being deleted")
    if cell.host_id == target.id:
        raise Conflict(f"cell {cell.name!r} already runs on host {target.name!r}")
    vols = bound_volumes(s, cell) if cell.host_id is not None else []
    if cell.host_id is not None:
        stays = unmovable_reason(s, cell)
        home = s.get(Host, cell.host_id)
        if vols and home is not None:
            state, why = hosts_mod.host_status(home, now, svc)
            if state == "DOWN":
                stays = f"its volume {_names(vols)} is on host {home.name}, which is DOWN ({why})"
        if stays is not None:
            raise Conflict(f"cell {cell.name!r} cannot move: {stays}")
    else:
        # Without a host its data is not copied: it may only go where its volumes are (it
        # would be assigned there without them, and wait for them for ever).
        for v in _volumes_on(s, cell):
            if v.host_id is not None and v.host_id != target.id:
                home = s.get(Host, v.host_id)
                raise Conflict(
                    f"cell {cell.name!r} cannot move to {target.name!r}: its volume "
                    f"{v.name!r} is on host {home.name if home else v.host_id}"
                )
    snap = [h for h in with_host_labels(hosts_mod.snapshot(s, svc, now)) if h.id == target.id]
    request = placement_request(cell, target.id)
    if not _reserving(cell):  # a stopped cell reserves nothing (services.capacity)
        request = dataclasses.replace(
            request, resources=scheduler.Resources(0, 0, 0), ports=frozenset()
        )
    reason = scheduler.explain(snap, request)
    if reason is not None:
        raise InsufficientCapacity(f"cell {cell.name!r} cannot move to {target.name!r}: {reason}")
    if vols:
        task = volume_moves.start(s, cell, target, now, principal.subject, project.tenant_id)
        s.flush()
        waking = (f"task:{task.id}", f"cell:{cell.id}", f"host:{cell.host_id}", "controller")
        return Outcome(202, tasks_mod.task_view(task), f"/v1/tasks/{task.id}", waking)
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind=MOVE_KIND,
        entity_kind="cell",
        entity_id=cell.id,
        tenant_id=project.tenant_id,
        project_id=cell.project_id,
        steps=tasks_mod.CREATE_STEPS,
        now=now,
    )
    if cell.task_id:
        old_task = s.get(Task, cell.task_id)
        if old_task is not None:
            tasks_mod.fail(old_task, f"superseded by {MOVE_KIND} task {task.id}", now)
    cell.task_id = task.id
    topics = {f"task:{task.id}", f"cell:{cell.id}", f"host:{target.id}", "controller"}
    source = None
    if cell.host_id is not None:
        source = leave(s, cell, now)
        topics.add(f"host:{source}")
    cell.host_id = target.id
    cell.host_rev = bump_host(s, target.id)
    for v in _volumes_on(s, cell):
        if v.host_id is None:  # never used yet: it is created where the cell now runs
            v.host_id = target.id
    cell.state = "SCHEDULED" if cell.desired_state in PLACED_DESIRED else "STOPPED"
    cell.message = None
    src = s.get(Host, source) if source else None
    s.add(
        CellEvent(
            cell_id=cell.id,
            at=now,
            type="moved",
            message=f"to {target.name} from {src.name if src else 'no host'} by "
            f"{principal.subject} (generation {cell.generation})",
        )
    )
    tasks_mod.advance(task, "SCHEDULE", "COMPLETED", now, message=f"on {target.name}")
    if cell.desired_state != "RUNNING":
        why = "made, not started" if cell.desired_state == "CREATED" else "the cell is stopped"
        tasks_mod.advance(task, "RUNNING", "COMPLETED", now, message=why)
    s.flush()
    return Outcome(202, tasks_mod.task_view(task), f"/v1/tasks/{task.id}", tuple(sorted(topics)))


def _reserving(cell: Cell) -> bool:
    return cell.desired_state in PLACED_DESIRED and cell.ended_at is None


# --- drain -----------------------------------------------------------------------------------


def drain(svc: Services, s: Session, principal: Principal, host_ref: str) -> Outcome:
    """MAINTENANCE, then every movable cell of the host is rescheduled elsewhere; the task has a
    step per cell, completed once the cell runs (or rests, if stopped) on another host."""
    now = utcnow()
    host = _host(s, host_ref)
    cells = s.scalars(
        select(Cell)
        .where(Cell.host_id == host.id, Cell.desired_state != "DELETED")
        .order_by(Cell.name, Cell.id)
    ).all()
    host.maintenance = True
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind=DRAIN_KIND,
        entity_kind="host",
        entity_id=host.id,
        tenant_id=None,
        steps=("MAINTENANCE", *(f"MOVE {c.name}" for c in cells)),
        now=now,
    )
    tasks_mod.advance(task, "MAINTENANCE", "COMPLETED", now, message=f"{host.name} in maintenance")
    steps = [dict(st) for st in task.steps]
    stuck: list[str] = []
    at = now.isoformat()
    snap = with_host_labels(hosts_mod.snapshot(s, svc, now))  # this host: MAINTENANCE now
    for st, cell in zip(steps[1:], cells, strict=True):
        st["cell"] = cell.id
        stays = unmovable_reason(s, cell)
        if stays is None and bound_volumes(s, cell):
            stays = _move_with_volume(s, cell, snap, now, principal.subject)
        elif stays is None:
            _unassign(s, cell, now, "drain", f"host {host.name} is drained: rescheduling elsewhere")
            continue
        if stays is None:
            continue
        st.update(state="ERROR", error=f"stays: {stays}", started_at=at, finished_at=at)
        stuck.append(f"{cell.name} ({stays})")
        _note(s, cell, now, "unavailable", f"host {host.name} is drained; the cell stays: {stays}")
    task.steps = steps
    if stuck:
        task.error = "not moved: " + "; ".join(stuck)
    _settle(task, now)
    s.flush()
    return Outcome(
        202,
        tasks_mod.task_view(task),
        f"/v1/tasks/{task.id}",
        ("controller", f"host:{host.id}", f"task:{task.id}"),
    )


def _move_with_volume(
    s: Session, cell: Cell, snap: list[scheduler.HostSnapshot], now: datetime, by: str
) -> str | None:
    """Start the move of a drained cell with its volume to where the scheduler says; None when
    started, else why it stays."""
    request = dataclasses.replace(placement_request(cell, None), labels={})
    plan = scheduler.place(snap, [request], now=now.timestamp())
    if not plan.placements:
        return f"no host can take it: {plan.unplaced[0].reason}"
    target = s.get(Host, plan.placements[0].host_id)
    assert target is not None
    volume_moves.start(s, cell, target, now, f"drain ({by})", None)
    return None


def _settle(task: Task, now: datetime) -> None:
    """Progress and end of a drain task from its steps."""
    steps: Sequence[dict[str, Any]] = task.steps
    done = sum(1 for st in steps if st["state"] in ("COMPLETED", "ERROR"))
    task.progress = int(100 * done / len(steps))
    if done < len(steps):
        task.state = "STARTED"
        return
    task.finished_at = now
    if any(st["state"] == "ERROR" for st in steps):
        task.state = "ERROR"
        task.error = task.error or "some cells were not moved"
    else:
        task.state = "COMPLETED"


def drain_progress(svc: Services, now: datetime) -> set[str]:
    """Complete the steps of running drains whose cell runs (or rests) on another host."""
    topics: set[str] = set()
    with svc.db.session() as s:
        for task in s.scalars(
            select(Task).where(Task.kind == DRAIN_KIND, Task.state.in_(("QUEUED", "STARTED")))
        ):
            steps = [dict(st) for st in task.steps]
            changed = False
            for st in steps:
                if st["state"] in ("COMPLETED", "ERROR") or "cell" not in st:
                    continue
                cell = s.get(Cell, st["cell"])
                moving = s.get(Task, cell.task_id) if cell is not None and cell.task_id else None
                if (
                    cell is not None
                    and moving is not None
                    and moving.kind == MOVE_KIND
                    and moving.state == "ERROR"
                    and cell.host_id == task.entity_id
                ):
                    st.update(state="ERROR", error=f"stays: {moving.error}")
                    st["finished_at"] = now.isoformat()
                    task.error = f"not moved: {cell.name} ({moving.error})"
                    changed = True
                    continue
                if cell is None:
                    msg = "the cell was deleted"
                elif cell.host_id is None and cell.desired_state != "RUNNING":
                    msg = "stopped: placed on a host when it starts again"
                elif (
                    cell.host_id is None
                    or cell.host_id == task.entity_id
                    or (cell.desired_state == "RUNNING" and cell.state != "RUNNING")
                ):
                    continue
                else:
                    host = s.get(Host, cell.host_id)
                    msg = f"on {host.name if host else cell.host_id} ({cell.state})"
                st.update(state="COMPLETED", finished_at=now.isoformat(), message=msg)
                st["started_at"] = st.get("started_at") or now.isoformat()
                changed = True
            if changed:
                task.steps = steps
                _settle(task, now)
                topics.add(f"task:{task.id}")
    return topics
