"""The audit log: every authentication event and every state change, queryable by admins.

`record` adds an event to the caller's session, so a change and its audit event commit together
(a failed change leaves a `failure` event written by `record_now` in its own transaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select
from sqlalchemy import insert as insert_
from sqlalchemy.orm import Session

from cellplane.errors import BadRequest, Forbidden, ValidationFailed
from cellplane.ids import is_id, new_id, utcnow
from cellplane.services.context import Principal, Services
from cellplane.state.identity_models import AuditEvent
from cellplane.state.models import Cell, Image, Project

__all__ = [
    "actor_of",
    "deleted_detail",
    "insert",
    "list_events",
    "record",
    "record_cell_delete",
    "record_now",
]


def actor_of(principal: Principal | None) -> str:
    if principal is None:
        return "anonymous"
    kind = "client" if principal.kind == "service" else principal.kind
    return f"{kind}:{principal.subject}"


def deleted_detail(
    project_id: str, name: str, docker_name: str | None, created_at: datetime
) -> dict[str, Any]:
    """The detail of a `network.delete` or `volume.delete` event: what the Docker endpoint's
    events of the resource need once its row is gone (`docker_resources.deletions`)."""
    return {
        "project_id": project_id,
        "name": name,
        "docker_name": docker_name,
        "created_at": created_at.isoformat(),
    }


def record(
    s: Session,
    *,
    tenant_id: str | None,
    actor: str,
    action: str,
    target: str = "",
    outcome: str = "success",
    source: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    s.add(AuditEvent(**_row(tenant_id, actor, action, target, outcome, source, detail, at)))


def record_cell_delete(s: Session, principal: Principal, cell: Cell) -> None:
    """`cell.delete`: what the Docker endpoint's events of the cell's container need once its
    row is gone (`docker_resources.removed_cells`): its project, name, image, labels and last
    exit as they are when its deletion is asked for."""
    image = s.get(Image, cell.image_id) if cell.image_id else None
    detail = {
        "project_id": cell.project_id,
        "name": cell.name,
        "image": image.name if image else "",
        "labels": dict(cell.labels or {}),
        "exit_code": cell.exit_code,
        "ended_at": cell.ended_at.isoformat() if cell.ended_at else None,
        "state": cell.state,
        "updated_at": cell.updated_at.isoformat() if cell.updated_at else None,
    }
    record_cell(s, principal, cell, "cell.delete", detail)


def record_cell(
    s: Session, principal: Principal, cell: Cell, action: str, detail: dict[str, Any]
) -> None:
    """`principal`'s `action` on `cell`, recorded under its project's tenant."""
    project = s.get(Project, cell.project_id)
    record(
        s,
        tenant_id=project.tenant_id if project else None,
        actor=actor_of(principal),
        action=action,
        target=f"cell:{cell.id}",
        detail=detail,
    )


def _row(
    tenant_id: str | None,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    source: str,
    detail: dict[str, Any] | None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """An audit row's columns, truncated to their sizes (`record` and `insert` alike)."""
    return {
        "id": new_id("aud"),
        "at": at or utcnow(),
        "tenant_id": tenant_id,
        "actor": actor[:256],
        "action": action[:64],
        "target": target,
        "outcome": outcome,
        "source": source[:64],
        "detail": detail or {},
    }


#: The Core statement of `insert` (built once).
_AUDIT_INSERT = insert_(cast(Table, AuditEvent.__table__))


def insert(
    s: Session | Connection,
    *,
    tenant_id: str | None,
    actor: str,
    action: str,
    target: str = "",
    outcome: str = "success",
    source: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """`record` as one Core INSERT, executed at once (no ORM unit of work): for hot paths such
    as the token endpoint. Same row, same truncation; what the row refers to (its tenant) must
    already be in the database, since it is not ordered after the session's pending objects.
    On a Core `Connection` (`Database.connection`) it skips the ORM's execution path too."""
    s.execute(_AUDIT_INSERT, _row(tenant_id, actor, action, target, outcome, source, detail))


def record_now(svc: Services, **event: Any) -> None:
    """`record` in a transaction of its own (for refusals, whose own transaction rolls back)."""
    with svc.db.session() as s:
        record(s, **event)


def _view(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "tenant_id": e.tenant_id,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "outcome": e.outcome,
        "source": e.source,
        "detail": e.detail,
    }


def list_events(
    svc: Services,
    principal: Principal,
    *,
    limit: int = 100,
    before: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    actor: str | None = None,
    all_tenants: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Newest first; a tenant admin sees their tenant's events, a system admin may see all.
    `since`/`until` bound the time (`since <= at < until`; the portal's time range)."""
    if not 1 <= limit <= 1000:
        raise ValidationFailed.field("limit", "must be between 1 and 1000")
    if all_tenants and not principal.is_system_admin:
        raise Forbidden("only a system admin may read every tenant's audit events (all_tenants)")
    if before is not None and not is_id(before):
        raise BadRequest.field("before", "is not a cursor this server issued")
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if not all_tenants:
        q = q.where(AuditEvent.tenant_id == principal.tenant_id)
    if before:
        q = q.where(AuditEvent.id < before)
    if action:
        q = q.where(AuditEvent.action == action)
    if outcome:
        q = q.where(AuditEvent.outcome == outcome)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at < until)
    with svc.db.reader() as s:
        items = [_view(e) for e in s.scalars(q)]
    return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}
