"""Services: N identical cells from one template (`/v1/projects/{p}/services`).

Every change (create, scale, update, delete) writes the service's desired state and a task, and
runs the first reconcile pass (`service_reconcile.run_pass`) in the same transaction: the cells a
create or a scale-up needs are admitted at once, their quota checked for the whole change before
any is written, or the change is refused whole and nothing changes. The controller's loop does
the rest (rollouts, replacing failed cells, finishing the task). See docs/services.md.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, Forbidden, NotFound, QuotaExceeded
from cellplane.ids import new_id, utcnow
from cellplane.scheduler.service_plan import plan_service
from cellplane.services import cells as cells_mod
from cellplane.services import isolation as isolation_mod
from cellplane.services import quotas as quotas_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome
from cellplane.services.schemas import CellCreate
from cellplane.services.service_reconcile import (
    CHANGE_STEPS,
    DELETE_STEPS,
    SERVICES_TOPIC,
    cell_row,
    cells_of,
    desired_of,
    observe,
    run_pass,
    status,
)
from cellplane.services.service_schemas import ServiceCreate, ServiceTemplate, ServiceUpdate
from cellplane.state.models import Project, Task
from cellplane.state.service_models import REVISION_LABEL, Service

__all__ = ["create", "delete", "get", "list_services", "scale", "update"]


def _find(s: Session, project: Project, name: str, *, lock: bool = False) -> Service:
    q = select(Service).where(
        Service.project_id == project.id, (Service.name == name) | (Service.id == name)
    )
    # A change and the controller's pass of one service take turns (PostgreSQL; SQLite
    # serialises writers anyway).
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None:
        raise NotFound(f"service {name!r} does not exist in project {project.name!r}")
    return row


def _template_dump(t: ServiceTemplate) -> dict[str, Any]:
    return t.model_dump(exclude={"name"}, mode="json")


def _isolate(s: Session, project: Project, service: str, template: dict[str, Any]) -> None:
    """Fix the template's isolation class: the one asked for, or the tenant's and project's
    minimum (standard when none). A class below that minimum refuses the whole change, naming
    the service and the policy, before any cell is written (even for 0 instances)."""
    try:
        template["isolation"] = isolation_mod.admit(
            s, project, template.get("isolation"), what="service"
        )
    except Forbidden as exc:
        raise Forbidden(f"service {service!r}: {exc}") from exc


def _size(s: Session, template: dict[str, Any]) -> tuple[float, int, int]:
    cpu, mem, disk, _ = cells_mod.resolve_size(
        s, CellCreate.model_validate({**template, "name": "x"})
    )
    return cpu, mem, disk


def _admit(
    s: Session,
    project: Project,
    service: str,
    *,
    cells: int,
    size: tuple[float, int, int],
    old: tuple[float, int, int] | None = None,
    kept: int = 0,
) -> None:
    """Quota for the whole change at once: `cells` more cells of `size`, and (a rollout) `kept`
    cells going from `old` to `size`. Refused whole, naming the quota and the service."""
    grow = [max(0.0, n - o) for n, o in zip(size, old or size, strict=True)]
    try:
        quotas_mod.admit(
            s,
            tenant_id=project.tenant_id,
            project_id=project.id,
            cpu=math.fsum([cells * size[0], kept * grow[0]]),
            memory_mb=int(cells * size[1] + kept * grow[1]),
            disk_gb=int(cells * size[2] + kept * grow[2]),
            cells=cells,
        )
    except QuotaExceeded as exc:
        raise QuotaExceeded(f"service {service!r} needs {cells} more cell(s): {exc}") from exc


def _new_task(s: Session, service: Service, project: Project, kind: str) -> Task:
    now = utcnow()
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind=kind,
        entity_kind="service",
        entity_id=service.id,
        tenant_id=project.tenant_id,
        project_id=project.id,
        steps=DELETE_STEPS if kind == "DELETE_SERVICE" else CHANGE_STEPS,
        now=now,
    )
    if service.task_id:
        old = s.get(Task, service.task_id)
        if old is not None:
            tasks_mod.fail(old, f"superseded by {kind} task {task.id}", now)
    service.task_id = task.id
    service.updated_at = now
    return task


def _first_pass(
    svc: Services, s: Session, principal: Principal, service: Service, task: Task
) -> Outcome:
    s.flush()
    _, topics = run_pass(svc, s, service, utcnow(), principal=principal, strict=True)
    s.flush()
    return Outcome(
        202,
        tasks_mod.task_view(task),
        f"/v1/tasks/{task.id}",
        (SERVICES_TOPIC, *dict.fromkeys(topics)),
    )


def create(
    svc: Services, s: Session, principal: Principal, project_name: str, body: ServiceCreate
) -> Outcome:
    project = cells_mod.project_for(s, principal, project_name, "cells:write")
    if s.scalar(
        select(Service.id).where(Service.project_id == project.id, Service.name == body.name)
    ):
        raise Conflict(f"a service named {body.name!r} already exists in {project.name!r}")
    template = _template_dump(body.template)
    _isolate(s, project, body.name, template)
    _admit(s, project, body.name, cells=body.instances, size=_size(s, template))
    now = utcnow()
    service = Service(
        id=new_id("svc"),
        project_id=project.id,
        name=body.name,
        template=template,
        revision=1,
        instances=body.instances,
        max_unavailable=body.update.max_unavailable,
        max_surge=body.update.max_surge,
        next_ordinal=1,
        state="ACTIVE",
        failures=0,
        created_by=principal.subject,
        created_at=now,
        updated_at=now,
    )
    s.add(service)
    task = _new_task(s, service, project, "CREATE_SERVICE")
    return _first_pass(svc, s, principal, service, task)


def _active(
    s: Session, principal: Principal, project_name: str, name: str
) -> tuple[Project, Service]:
    project = cells_mod.project_for(s, principal, project_name, "cells:write")
    service = _find(s, project, name, lock=True)
    if service.state == "DELETING":
        raise Conflict(f"service {service.name!r} is being deleted")
    return project, service


def scale(
    svc: Services, s: Session, principal: Principal, project_name: str, name: str, instances: int
) -> Outcome:
    project, service = _active(s, principal, project_name, name)
    live = [c for c in cells_of(s, service) if c.desired_state != "DELETED"]
    more = instances - len(live)
    if more > 0:
        _admit(s, project, service.name, cells=more, size=_size(s, service.template))
    service.instances = instances
    task = _new_task(s, service, project, "SCALE_SERVICE")
    return _first_pass(svc, s, principal, service, task)


def update(
    svc: Services,
    s: Session,
    principal: Principal,
    project_name: str,
    name: str,
    body: ServiceUpdate,
) -> Outcome:
    project, service = _active(s, principal, project_name, name)
    template = _template_dump(body.template)
    _isolate(s, project, service.name, template)
    old_size = _size(s, service.template)
    new_size = _size(s, template)
    # At the rollout's peak: max_surge cells more, and every kept cell at the new size.
    policy = body.update
    surge = policy.max_surge if policy else service.max_surge
    _admit(
        s,
        project,
        service.name,
        cells=min(surge, service.instances),
        size=new_size,
        old=old_size,
        kept=service.instances,
    )
    if policy is not None:
        service.max_unavailable, service.max_surge = policy.max_unavailable, policy.max_surge
    if template != service.template:
        service.template = template
        service.revision += 1
    task = _new_task(s, service, project, "UPDATE_SERVICE")
    return _first_pass(svc, s, principal, service, task)


def delete(
    svc: Services, s: Session, principal: Principal, project_name: str, name: str
) -> Outcome:
    """Delete the service and every cell of it; the row goes once its last cell is gone."""
    project = cells_mod.project_for(s, principal, project_name, "cells:write")
    service = _find(s, project, name, lock=True)
    if service.state == "DELETING" and service.task_id:
        task = s.get(Task, service.task_id)
        if task is not None:
            return Outcome(202, tasks_mod.task_view(task), f"/v1/tasks/{task.id}", ())
    service.state = "DELETING"
    task = _new_task(s, service, project, "DELETE_SERVICE")
    return _first_pass(svc, s, principal, service, task)


def _view(s: Session, project: Project, service: Service) -> dict[str, Any]:
    cells = cells_of(s, service)
    plan = plan_service(desired_of(service), observe(service, cells), utcnow())
    task = s.get(Task, service.task_id) if service.task_id else None
    live = [c for c in cells if c.desired_state != "DELETED"]
    return {
        "id": service.id,
        "name": service.name,
        "project": project.name,
        "state": status(service, plan),
        "instances": service.instances,
        "ready": sum(1 for c in live if c.state == "RUNNING" and c.ended_at is None),
        "current": sum(1 for c in live if c.labels.get(REVISION_LABEL) == str(service.revision)),
        "revision": service.revision,
        # Fixed at create/update; a service older than that takes what its cells would get.
        "isolation": service.template.get("isolation") or isolation_mod.admit(s, project, None),
        "template": service.template,
        "update": {"max_unavailable": service.max_unavailable, "max_surge": service.max_surge},
        "message": service.message,
        "task": tasks_mod.task_view(task) if task is not None else None,
        "cells": [cell_row(service, c) for c in cells],
        "created_at": service.created_at.isoformat(),
        "updated_at": service.updated_at.isoformat(),
    }


def list_services(svc: Services, principal: Principal, project_name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        project = cells_mod.project_for(s, principal, project_name, "cells:read")
        rows = s.scalars(
            select(Service).where(Service.project_id == project.id).order_by(Service.name)
        ).all()
        return {"items": [_view(s, project, r) for r in rows], "next_cursor": None}


def get(svc: Services, principal: Principal, project_name: str, name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        project = cells_mod.project_for(s, principal, project_name, "cells:read")
        return _view(s, project, _find(s, project, name))
