"""Projects of a tenant (the `default` tenant and project exist from the first start)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict
from cellplane.ids import new_id, utcnow
from cellplane.services import audit, isolation
from cellplane.services.cells import project_for
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome
from cellplane.services.schemas import IsolationPolicy, ProjectCreate
from cellplane.services.views import project_view
from cellplane.state.models import Project

__all__ = ["create", "list_projects", "update"]


def list_projects(svc: Services, principal: Principal) -> dict[str, Any]:
    with svc.db.reader() as s:
        ps = s.scalars(
            select(Project).where(Project.tenant_id == principal.tenant_id).order_by(Project.name)
        )
        return {
            "items": [
                project_view(p, principal.tenant) for p in ps if principal.sees_project(p.id)
            ],
            "next_cursor": None,
        }


def create(svc: Services, s: Session, principal: Principal, body: ProjectCreate) -> Outcome:
    if s.scalar(
        select(Project.id).where(
            Project.tenant_id == principal.tenant_id, Project.name == body.name
        )
    ):
        raise Conflict(f"a project named {body.name!r} already exists")
    p = Project(
        id=new_id("prj"), tenant_id=principal.tenant_id, name=body.name, created_at=utcnow()
    )
    s.add(p)
    s.flush()
    return Outcome(201, project_view(p, principal.tenant), f"/v1/projects/{p.name}")


def update(svc: Services, principal: Principal, name: str, body: IsolationPolicy) -> dict[str, Any]:
    """Set the project's minimum isolation class; its existing cells are reported, not changed."""
    with svc.db.session() as s:
        p = project_for(s, principal, name, "projects:write")
        below = isolation.set_minimum(s, p, body.isolation)
        audit.record(
            s,
            tenant_id=p.tenant_id,
            actor=audit.actor_of(principal),
            action="project.update",
            target=p.name,
            detail={"min_isolation": p.min_isolation, "cells_below_policy": len(below)},
        )
        return {**project_view(p, principal.tenant), "cells_below_policy": below}
