"""Quotas of tenants and projects, and the admission check every creating transaction runs.

A tenant's quota caps everything its projects use together; it is split into project quotas: for
each resource, the project quotas of the tenant may not add up to more than the tenant's (when
both are set). A None limit means "no limit"; no quota row at all means nothing to enforce.

Usage is what the tenant or project holds now, read from the database in the admitting transaction
(never cached): every cell not being deleted (desired state DELETED) counts with its cpu, memory
and disk and as one cell, whether it runs or is stopped (a stopped cell keeps its reservation); every
volume not being deleted counts with its size.

Admission is race-free: on SQLite every write transaction is BEGIN IMMEDIATE, so writers run one
at a time; on PostgreSQL `admit` first locks the tenant's and then the project's quota row
(SELECT ... FOR UPDATE), so two creates under the same quota run their check-and-insert one after
the other, and the second one's usage query (a new statement under READ COMMITTED) sees the rows
the first one committed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.errors import Conflict, Forbidden, NotFound, QuotaExceeded
from cellplane.ids import new_id, utcnow
from cellplane.services import audit
from cellplane.services.context import Principal, Services
from cellplane.state import networks
from cellplane.state.identity_models import Quota
from cellplane.state.models import Cell, Project, Tenant, Volume

__all__ = [
    "RESOURCES",
    "QuotaLimits",
    "admit",
    "admit_nodes",
    "get_quota",
    "set_quota",
    "usage",
]

RESOURCES = ("cpu", "memory_mb", "disk_gb", "cells", "volumes_gb")
_MAX_INT = 2**31 - 1  # the columns are 32-bit integers on PostgreSQL
_EPS = 1e-9  # cpu is fractional: sums of floats must not refuse an exact fit

Number = float | int


class QuotaLimits(BaseModel):
    """The body of PUT .../quota: the whole set of limits (absent or null: no limit)."""

    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(default=None, ge=0, le=1e9, allow_inf_nan=False, strict=True)
    memory_mb: int | None = Field(default=None, ge=0, le=_MAX_INT, strict=True)
    disk_gb: int | None = Field(default=None, ge=0, le=_MAX_INT, strict=True)
    cells: int | None = Field(default=None, ge=0, le=_MAX_INT, strict=True)
    volumes_gb: int | None = Field(default=None, ge=0, le=_MAX_INT, strict=True)


# --- usage and admission ---


def _limits(q: Quota | None) -> dict[str, Number | None]:
    return {r: (getattr(q, r) if q is not None else None) for r in RESOURCES}


def usage(s: Session, tenant_id: str, project_id: str | None = None) -> dict[str, Number]:
    """What the project (or, without `project_id`, the whole tenant) holds now."""
    cq = select(
        func.coalesce(func.sum(Cell.cpu), 0.0),
        func.coalesce(func.sum(Cell.memory_mb), 0),
        func.coalesce(func.sum(Cell.disk_gb), 0),
        func.count(Cell.id),
    ).where(Cell.desired_state != "DELETED")
    vq = select(func.coalesce(func.sum(Volume.size_gb), 0)).where(Volume.state != "DELETING")
    if project_id is not None:
        cq = cq.where(Cell.project_id == project_id)
        vq = vq.where(Volume.project_id == project_id)
    else:
        cq = cq.join(Project, Project.id == Cell.project_id).where(Project.tenant_id == tenant_id)
        vq = vq.join(Project, Project.id == Volume.project_id).where(Project.tenant_id == tenant_id)
    cpu, mem, disk, n = s.execute(cq).one()
    vols = s.execute(vq).scalar_one()
    return {
        "cpu": round(float(cpu), 6),
        "memory_mb": int(mem),
        "disk_gb": int(disk),
        "cells": int(n),
        "volumes_gb": int(vols),
    }


def _quota_row(s: Session, tenant_id: str, project_id: str | None, *, lock: bool) -> Quota | None:
    q = select(Quota).where(
        Quota.tenant_id == tenant_id,
        Quota.project_id.is_(None) if project_id is None else Quota.project_id == project_id,
    )
    if lock:
        q = q.with_for_update()  # a no-op on SQLite, whose writers are serialised anyway
    # populate_existing: re-read the row even if this session loaded it before.
    return s.scalar(q.execution_options(populate_existing=True))


def _fmt(v: Number) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def admit(
    s: Session,
    *,
    tenant_id: str,
    project_id: str,
    cpu: float = 0,
    memory_mb: int = 0,
    disk_gb: int = 0,
    cells: int = 0,
    volumes_gb: int = 0,
) -> None:
    """Refuse (QuotaExceeded) a request that would take the project or its tenant over a limit.

    Call it inside the creating transaction, before the new rows are added. Only the resources
    the request asks for are checked, so a quota lowered below usage blocks new requests for that
    resource and nothing else.
    """
    request: dict[str, Number] = {
        "cpu": float(cpu),
        "memory_mb": memory_mb,
        "disk_gb": disk_gb,
        "cells": cells,
        "volumes_gb": volumes_gb,
    }
    if not any(v > 0 for v in request.values()):
        return
    # Always the tenant's row first, then the project's: one lock order, no deadlocks.
    tenant_q = _quota_row(s, tenant_id, None, lock=True)
    project_q = _quota_row(s, tenant_id, project_id, lock=True)
    for quota, scope_project in ((project_q, project_id), (tenant_q, None)):
        limits = _limits(quota)
        checked = [r for r in RESOURCES if request[r] > 0 and limits[r] is not None]
        if not checked:
            continue
        used = usage(s, tenant_id, scope_project)
        for r in checked:
            limit = limits[r]
            assert limit is not None
            if used[r] + request[r] > limit + _EPS:
                raise QuotaExceeded(
                    f"{_scope_label(s, tenant_id, scope_project)}: {r} quota is {_fmt(limit)}, "
                    f"{_fmt(used[r])} in use, this request needs {_fmt(request[r])}"
                )


def admit_nodes(
    s: Session, project_id: str, nodes: Iterable[scheduler.Resources], *, volumes_gb: int = 0
) -> None:
    """`admit` the cells of cluster nodes, one per node, sized as the executor creates them.

    `volumes_gb`: the size of the nodes' data volumes the executor will create, checked in the
    same admission.
    """
    project = s.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id!r} does not exist")
    # The cluster executor (_create_cell) gives each cell at least 0.01 cpu and 64 MB of memory.
    sized = [(max(n.cpu, 0.01), max(n.memory_mb, 64), n.disk_gb) for n in nodes]
    admit(
        s,
        tenant_id=project.tenant_id,
        project_id=project.id,
        cpu=math.fsum(c for c, _, _ in sized),
        memory_mb=sum(m for _, m, _ in sized),
        disk_gb=sum(d for _, _, d in sized),
        cells=len(sized),
        volumes_gb=volumes_gb,
    )


def _scope_label(s: Session, tenant_id: str, project_id: str | None) -> str:
    if project_id is not None:
        p = s.get(Project, project_id)
        return f"project {p.name if p else project_id}"
    t = s.get(Tenant, tenant_id)
    return f"tenant {t.name if t else tenant_id}"


# --- reading and setting quotas ---


def _tenant_for(s: Session, principal: Principal, name: str) -> Tenant:
    """The tenant by name or id: the caller's own, or any for a system admin (else 404)."""
    t = s.scalar(select(Tenant).where((Tenant.name == name) | (Tenant.id == name)))
    if t is None or (t.id != principal.tenant_id and not principal.is_system_admin):
        raise NotFound(f"tenant {name!r} does not exist")
    return t


def _scope(
    s: Session, principal: Principal, tenant: str | None, project: str | None, permission: str
) -> tuple[Tenant, Project | None]:
    if (tenant is None) == (project is None):
        raise ValueError("give exactly one of tenant and project")
    if tenant is not None:
        return _tenant_for(s, principal, tenant), None
    assert project is not None
    # Imported here: cells imports this module for admission.
    from cellplane.services.cells import project_for

    p = project_for(s, principal, project, permission=permission)
    t = s.get(Tenant, p.tenant_id)
    if t is None:
        raise NotFound(f"project {project!r} does not exist")
    return t, p


def _allocated(s: Session, tenant_id: str, exclude: str | None = None) -> dict[str, Number]:
    """The sums of the tenant's project quotas (unset limits add nothing)."""
    q = select(
        *(func.coalesce(func.sum(getattr(Quota, r)), 0) for r in RESOURCES),
    ).where(Quota.tenant_id == tenant_id, Quota.project_id.is_not(None))
    if exclude is not None:
        q = q.where(Quota.project_id != exclude)
    row = s.execute(q).one()
    return {
        r: (round(float(v), 6) if r == "cpu" else int(v))
        for r, v in zip(RESOURCES, row, strict=True)
    }


def _view(s: Session, t: Tenant, p: Project | None, q: Quota | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "scope": "project" if p is not None else "tenant",
        "tenant": t.name,
        "project": p.name if p is not None else None,
        "limits": _limits(q),
        "usage": usage(s, t.id, p.id if p is not None else None),
    }
    if p is None:
        view["allocated"] = _allocated(s, t.id)  # what the project quotas hand out
    if q is not None:
        view["updated_at"] = q.updated_at.isoformat()
    return view


def get_quota(
    svc: Services, principal: Principal, *, tenant: str | None = None, project: str | None = None
) -> dict[str, Any]:
    """The limits and usage of a tenant or (exclusively) of a project of the caller's tenant."""
    with svc.db.reader() as s:
        t, p = _scope(s, principal, tenant, project, "quotas:read")
        return _view(s, t, p, _quota_row(s, t.id, p.id if p else None, lock=False))


def _check_split(
    s: Session, t: Tenant, p: Project | None, limits: dict[str, Number | None]
) -> None:
    """Refuse limits that would let the project quotas add up to more than the tenant quota."""
    if p is None:
        tenant_limits = limits
        allocated = _allocated(s, t.id)
    else:
        tenant_limits = _limits(_quota_row(s, t.id, None, lock=False))
        others = _allocated(s, t.id, exclude=p.id)
        allocated = {r: others[r] + (limits[r] or 0) for r in RESOURCES}
    for r in RESOURCES:
        tl = tenant_limits[r]
        if tl is None or (p is not None and limits[r] is None):
            continue
        if allocated[r] > tl + _EPS:
            raise Conflict(
                f"tenant {t.name}: the project quotas of {r} would add up to "
                f"{_fmt(allocated[r])}, more than the tenant's {r} quota of {_fmt(tl)}"
            )


def set_quota(
    svc: Services,
    principal: Principal,
    limits: QuotaLimits,
    *,
    tenant: str | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Replace the limits of a tenant or a project (every field; absent means no limit).

    Refused with 409, changing nothing, when the project quotas would add up to more than the
    tenant's quota for some resource. A limit below current usage is allowed: it blocks new
    admissions of that resource until usage falls below it, and takes nothing away. A cell quota
    changes the size of a project network that no cell uses to fit it
    (`state.networks.fit_networks`). Audited as `quota.set` in the same
    transaction.
    """
    with svc.db.session() as s:
        t, p = _scope(s, principal, tenant, project, "quotas:write")
        if p is None and not principal.can("tenants:write"):
            raise Forbidden("only a system admin sets a tenant's quota")
        # Serialise the quota changes of one tenant (PostgreSQL; SQLite serialises all writers).
        # NO KEY UPDATE: rows that merely reference the tenant may still be inserted meanwhile.
        s.execute(select(Tenant.id).where(Tenant.id == t.id).with_for_update(key_share=True))
        new: dict[str, Number | None] = limits.model_dump()
        _check_split(s, t, p, new)
        row = _quota_row(s, t.id, p.id if p else None, lock=True)
        now = utcnow()
        if row is None:
            row = Quota(id=new_id("quo"), tenant_id=t.id, project_id=p.id if p else None)
            s.add(row)
        for r in RESOURCES:
            setattr(row, r, new[r])
        row.updated_at = now
        s.flush()
        # A network sized for the old cell quota follows it while no cell uses it yet.
        scope = [p] if p else s.scalars(select(Project).where(Project.tenant_id == t.id)).all()
        moved = {n.name: n.subnet for n in networks.fit_networks(s, scope)}
        target = f"tenant:{t.name}" if p is None else f"project:{t.name}/{p.name}"
        audit.record(
            s,
            tenant_id=t.id,
            actor=audit.actor_of(principal),
            action="quota.set",
            target=target,
            detail={**new, **({"networks_resized": moved} if moved else {})},
            at=now,
        )
        s.flush()
        return _view(s, t, p, row)
