"""What a Docker-compatible endpoint reads about its project's resources beyond cells' own views:
which cells sit on which network, the cells' tasks (the source of `docker events`), and the cells'
names and images (for events of cells that may be gone since).

Read-only; the caller (`cellplane.dockerapi`) has already admitted the principal to the project.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from cellplane.services.context import Services
from cellplane.services.views import iso
from cellplane.state import networks as state_networks
from cellplane.state.identity_models import AuditEvent
from cellplane.state.models import Cell, CellEvent, CellNetwork, Image, Network, Task

__all__ = [
    "cell_network",
    "cell_refs",
    "cell_tasks",
    "cells_by_network",
    "cells_named",
    "state_view",
    "task_state",
]

#: The most tasks one `docker events` read considers.
MAX_TASKS = 5000


def cells_by_network(svc: Services, project_id: str) -> dict[str, list[dict[str, Any]]]:
    """network id -> the project's cells on it (id, name, address), the default network's
    under its own id."""
    default = state_networks.default_network_id(project_id)
    out: dict[str, list[dict[str, Any]]] = {}
    with svc.db.reader() as s:
        rows = s.execute(
            select(Cell.id, Cell.name, CellNetwork.address, Cell.address, CellNetwork.network_id)
            .join(CellNetwork, CellNetwork.cell_id == Cell.id)
            .where(Cell.project_id == project_id)
            .order_by(Cell.name)
        )
        for cid, name, net_address, address, network_id in rows:
            out.setdefault(network_id or default, []).append(
                {"id": cid, "name": name, "address": net_address or address}
            )
    return out


def cell_refs(svc: Services, project_id: str) -> list[tuple[str, str]]:
    """(id, name) of every cell of the project: what a container reference (a name, an id or
    a prefix of one) is matched against, two columns rather than each cell's view."""
    with svc.db.reader() as s:
        rows = s.execute(select(Cell.id, Cell.name).where(Cell.project_id == project_id))
        return [(cid, name) for cid, name in rows]


#: The newest starts a state view carries (a wait compares their count and the last one's time).
STARTS_KEPT = 50


def state_view(svc: Services, cell_id: str) -> dict[str, Any] | None:
    """What a `wait`, a `start` and an auto-removal look at, read on each change of the cell: its
    id, name, labels, states, container, exit code, restart policy and its newest starts (events
    `started`, `restarted`); None once it is gone. Two small reads, where its whole view takes
    the project, tenant, image, host, networks and every kind of event."""
    with svc.db.reader() as s:
        row = s.execute(
            select(
                Cell.name,
                Cell.labels,
                Cell.state,
                Cell.desired_state,
                Cell.container_id,
                Cell.exit_code,
                Cell.restart_policy,
            ).where(Cell.id == cell_id)
        ).first()
        if row is None:
            return None
        starts = s.execute(
            select(CellEvent.at, CellEvent.type)
            .where(CellEvent.cell_id == cell_id, CellEvent.type.in_(("started", "restarted")))
            .order_by(CellEvent.id.desc())
            .limit(STARTS_KEPT)
        ).all()
    name, labels, state, desired, container_id, exit_code, policy = row
    return {
        "id": cell_id,
        "name": name,
        "labels": labels or {},
        "state": state,
        "desired_state": desired,
        "container_id": container_id,
        "exit_code": exit_code,
        "restart": {"policy": policy},
        "events": [{"at": iso(at), "type": kind} for at, kind in reversed(starts)],
    }


def task_state(svc: Services, task_id: str) -> str | None:
    """A task's state, None if there is no such task (what a wait for a task looks at first)."""
    with svc.db.reader() as s:
        return s.scalar(select(Task.state).where(Task.id == task_id))


def cell_network(svc: Services, cell_id: str) -> str | None:
    """The name of the network a cell is on (None: its project's default network)."""
    with svc.db.reader() as s:
        network_id = s.scalar(select(Cell.network_id).where(Cell.id == cell_id))
        if network_id is None:
            return None
        net = s.get(Network, network_id)
        return None if net is None or state_networks.is_default(net) else net.name


def cell_tasks(
    svc: Services, project_id: str, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """The project's cell tasks that may hold an event between `since` and `until` (made
    before `until`, and not ended before `since`), oldest first."""
    with svc.db.reader() as s:
        q = select(Task).where(Task.project_id == project_id, Task.entity_kind == "cell")
        if since is not None:
            q = q.where(
                or_(Task.created_at >= since, Task.finished_at >= since, Task.finished_at.is_(None))
            )
        if until is not None:
            q = q.where(Task.created_at <= until)
        q = q.order_by(Task.created_at.desc(), Task.id.desc()).limit(MAX_TASKS)
        found = [
            {
                "id": t.id,
                "kind": t.kind,
                "state": t.state,
                "cell_id": t.entity_id,
                "error": t.error,
                "steps": [dict(st) for st in t.steps or []],
                "created_at": iso(t.created_at),
                "finished_at": iso(t.finished_at),
            }
            for t in s.scalars(q)
        ]
    found.reverse()
    return found


def health_events(
    svc: Services, project_id: str, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """The project's cells' new health statuses (`health_status` events: cell id, at, status)
    between `since` and `until`, oldest first (the newest MAX_TASKS)."""
    with svc.db.reader() as s:
        q = (
            select(CellEvent.cell_id, CellEvent.at, CellEvent.message)
            .join(Cell, Cell.id == CellEvent.cell_id)
            .where(Cell.project_id == project_id, CellEvent.type == "health_status")
        )
        if since is not None:
            q = q.where(CellEvent.at >= since)
        if until is not None:
            q = q.where(CellEvent.at <= until)
        q = q.order_by(CellEvent.at.desc()).limit(MAX_TASKS)
        found = [{"cell_id": c, "at": iso(at), "status": m} for c, at, m in s.execute(q)]
    found.reverse()
    return found


def cells_named(
    svc: Services, project_id: str, cell_id: str | None = None
) -> dict[str, dict[str, Any]]:
    """cell id -> name, image (its name), labels, exit code, when it ended for good (None
    unless its container went), state and last change, of the project's cells (or of its cell
    `cell_id` only)."""
    with svc.db.reader() as s:
        q = (
            select(
                Cell.id,
                Cell.name,
                Image.name,
                Cell.labels,
                Cell.exit_code,
                Cell.ended_at,
                Cell.state,
                Cell.updated_at,
            )
            .join(Image, Image.id == Cell.image_id, isouter=True)
            .where(Cell.project_id == project_id)
        )
        if cell_id is not None:
            q = q.where(Cell.id == cell_id)
        rows = s.execute(q)
        return {
            cid: {
                "name": name,
                "image": image or "",
                "labels": dict(labels or {}),
                "exit_code": code,
                "ended_at": iso(ended),
                "state": state,
                "updated_at": iso(updated),
            }
            for cid, name, image, labels, code, ended, state, updated in rows
        }


#: The audit actions of a network's and a volume's deletion (`services.audit.deleted_detail`).
DELETIONS = ("network.delete", "volume.delete")


def _audited(
    svc: Services,
    project_id: str,
    actions: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
) -> list[tuple[str, str, dict[str, Any], datetime]]:
    """(action, target, detail, at) of the audit events `actions` of the project's resources
    (their detail names the project) between `since` and `until`, oldest first."""
    query = select(AuditEvent.action, AuditEvent.target, AuditEvent.detail, AuditEvent.at).where(
        AuditEvent.action.in_(actions), AuditEvent.outcome == "success"
    )
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at <= until)
    with svc.db.reader() as s:
        rows = s.execute(query.order_by(AuditEvent.at)).all()
    return [
        (action, target, detail, at)
        for action, target, detail, at in rows
        if (detail or {}).get("project_id") == project_id
    ]


def removed_cells(
    svc: Services, project_id: str, since: datetime | None
) -> dict[str, dict[str, Any]]:
    """cell id -> its name, image, labels, last exit, state and last change as `cells_named`
    gives them, of the project's cells whose deletion was asked for since `since` (from the
    audit log's `cell.delete`: their rows are gone, or going)."""
    keys = ("name", "image", "labels", "exit_code", "ended_at", "state", "updated_at")
    return {
        target.partition(":")[2]: {k: detail.get(k) for k in keys}
        for _, target, detail, _ in _audited(svc, project_id, ("cell.delete",), since, None)
    }


def deletions(
    svc: Services, project_id: str, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """The project's networks and volumes deleted between `since` and `until` (through the
    REST API, the CLI or a Docker endpoint), oldest first: {kind, id, name, docker_name,
    created_at, at} each, from the audit log (their rows are gone)."""
    out = []
    for action, target, detail, at in _audited(svc, project_id, DELETIONS, since, until):
        out.append(
            {
                "kind": action.partition(".")[0],
                "id": target.partition(":")[2],
                "name": detail.get("name") or "",
                "docker_name": detail.get("docker_name"),
                "created_at": detail.get("created_at"),
                "at": iso(at),
            }
        )
    return out
