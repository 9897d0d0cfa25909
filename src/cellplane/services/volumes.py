"""Volumes: persistent storage of a project that outlives the cells using it.

A volume is bound to the host of the first cell that mounts it (local storage); the agent creates the
engine volume on demand and removes it once the volume is deleted here. A volume on a DOWN host
is shown unavailable, with the reason; it moves only with its cell (`services.volume_moves`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, NotFound
from cellplane.ids import new_id, utcnow
from cellplane.services import audit, quotas
from cellplane.services.cells import bump_host, check_project, project_for
from cellplane.services.context import Principal, Services
from cellplane.services.hosts import host_status
from cellplane.services.idempotency import Outcome
from cellplane.services.schemas import VolumeCreate
from cellplane.services.views import volume_view
from cellplane.state.models import Cell, Host, Project, Volume

__all__ = ["create", "delete", "get", "list_volumes"]


def _attached(s: Session, v: Volume) -> list[Cell]:
    return [
        c
        for c in s.scalars(select(Cell).where(Cell.project_id == v.project_id).order_by(Cell.id))
        if any(m.get("volume") == v.name for m in c.volumes or [])
    ]


def _view(s: Session, v: Volume, svc: Services) -> dict[str, Any]:
    p = s.get(Project, v.project_id)
    host = s.get(Host, v.host_id) if v.host_id else None
    cells = _attached(s, v)
    view = volume_view(
        v,
        project=p.name if p else "",
        attached_to=[c.id for c in cells],
        attached_names=[c.name for c in cells],
        host_name=host.name if host else None,
    )
    unavailable = None
    if host is not None:
        state, why = host_status(host, utcnow(), svc)
        if state == "DOWN":
            unavailable = (
                f"its host {host.name} is DOWN ({why}): the data is there, and usable again "
                "when the host is back"
            )
    return {**view, "available": unavailable is None, "unavailable_reason": unavailable}


def create(
    svc: Services,
    s: Session,
    principal: Principal,
    project: str,
    body: VolumeCreate,
    *,
    docker_name: str | None = None,
) -> Outcome:
    """A new volume of the project (`docker_name` as in `project_networks.create`)."""
    p = project_for(s, principal, project, "volumes:write")
    if s.scalar(select(Volume.id).where(Volume.project_id == p.id, Volume.name == body.name)):
        raise Conflict(f"a volume named {body.name!r} already exists in project {p.name!r}")
    quotas.admit(s, tenant_id=p.tenant_id, project_id=p.id, volumes_gb=body.size_gb)
    v = Volume(
        id=new_id("vol"),
        project_id=p.id,
        name=body.name,
        size_gb=body.size_gb,
        state="READY",
        created_at=utcnow(),
        labels=dict(body.labels),
        docker_name=docker_name if docker_name != body.name else None,
    )
    s.add(v)
    s.flush()
    return Outcome(201, _view(s, v, svc), f"/v1/volumes/{v.id}")


def list_volumes(svc: Services, principal: Principal, project: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        p = project_for(s, principal, project, "volumes:read")
        vols = s.scalars(
            select(Volume)
            .where(Volume.project_id == p.id, Volume.state == "READY")
            .order_by(Volume.id)
        )
        return {"items": [_view(s, v, svc) for v in vols], "next_cursor": None}


def _visible(s: Session, principal: Principal, volume_id: str, permission: str) -> Volume:
    v = s.get(Volume, volume_id)
    if v is None or v.state != "READY":
        raise NotFound(f"volume {volume_id!r} does not exist")
    check_project(s, principal, v.project_id, permission, f"volume {volume_id!r}")
    return v


def get(svc: Services, principal: Principal, volume_id: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return _view(s, _visible(s, principal, volume_id, "volumes:read"), svc)


def delete(svc: Services, principal: Principal, volume_id: str) -> None:
    topics: list[str] = []
    with svc.db.session() as s:
        v = _visible(s, principal, volume_id, "volumes:write")
        users = _attached(s, v)
        if users:
            names = ", ".join(repr(c.name) for c in users)
            raise Conflict(
                f"volume {v.name!r} is attached to cell(s) {names}; remove them first "
                f"(`cellplane cell rm NAME`)"
            )
        project = s.get(Project, v.project_id)
        audit.record(
            s,
            tenant_id=project.tenant_id if project else None,
            actor=audit.actor_of(principal),
            action="volume.delete",
            target=f"volume:{v.id}",
            detail=audit.deleted_detail(v.project_id, v.name, v.docker_name, v.created_at),
        )
        if v.host_id is None:
            s.delete(v)
        else:
            # The agent removes the engine volume, then the row goes (see hosts.apply_status).
            v.state = "DELETING"
            bump_host(s, v.host_id)
            topics.append(f"host:{v.host_id}")
    if topics:
        svc.notifier.publish(*topics)
