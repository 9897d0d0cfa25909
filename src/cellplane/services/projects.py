"""Projects of a tenant (the `default` tenant and project exist from the first start)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sql_delete
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
from cellplane.state import networks as state_networks
from cellplane.state.cluster_models import Cluster
from cellplane.state.identity_models import Quota, RoleAssignment
from cellplane.state.models import Cell, DockerEndpoint, Network, Project, Volume
from cellplane.state.service_models import Service

__all__ = ["create", "delete", "list_projects", "update"]


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


#: What keeps a project alive, with the command that removes it.
_LEFT = (
    (Cluster, "cluster", "cellplane cluster rm"),
    (Service, "service", "cellplane service rm"),
    (Cell, "cell", "cellplane cell rm"),
    (Volume, "volume", "cellplane volume rm"),
    (Network, "network", "cellplane network rm"),
    (DockerEndpoint, "docker endpoint", "cellplane endpoint rm"),
)


def _left_in(s: Session, p: Project) -> str | None:
    """What the project still holds, by name (its default network aside); None: nothing."""
    parts: list[str] = []
    commands: list[str] = []
    default_net = state_networks.default_network_id(p.id)
    for model, label, command in _LEFT:
        q = select(model).where(model.project_id == p.id)
        if model is Network:
            q = q.where(Network.id != default_net)
        rows = list(s.scalars(q.limit(6)))
        if not rows:
            continue
        names = [str(getattr(r, "name", None) or f"port {getattr(r, 'port', '')}") for r in rows]
        shown = ", ".join(names[:5]) + (" and more" if len(names) > 5 else "")
        parts.append(f"{label}s ({shown})")
        commands.append(f"`{command}`")
    if not parts:
        return None
    return (
        f"project {p.name!r} still has {'; '.join(parts)}; delete them first "
        f"({', '.join(commands)})"
    )


def delete(svc: Services, principal: Principal, name: str) -> None:
    """Delete an empty project: its default network, quota and role assignments go with it.
    Refused (409, naming them) while it has clusters, services, cells, volumes, networks or a
    Docker endpoint; the `default` project is never deleted. Its tasks and audit events are
    history and outlive it (they keep its id)."""
    with svc.db.session() as s:
        p = project_for(s, principal, name, "projects:write")
        if p.name == "default":
            raise Conflict("the default project cannot be deleted")
        left = _left_in(s, p)
        if left:
            raise Conflict(left)
        s.execute(sql_delete(RoleAssignment).where(RoleAssignment.project_id == p.id))
        s.execute(sql_delete(Quota).where(Quota.project_id == p.id))
        s.execute(sql_delete(Network).where(Network.project_id == p.id))
        audit.record(
            s,
            tenant_id=p.tenant_id,
            actor=audit.actor_of(principal),
            action="project.delete",
            target=p.name,
            detail={"id": p.id},
        )
        s.delete(p)
