"""A service's reconcile pass: read its cells, plan (`scheduler.service_plan`), act, record.

One pass is one transaction. The API runs the first pass of every change in the request's own
transaction (so a create or a scale-up is admitted whole, or refused whole and nothing changes);
the controller's loop (`controller.services`) runs a pass for every service each second: it
replaces failed or lost cells, goes on with a rollout as cells become ready, finishes the task.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, not_, or_, select
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.errors import CellplaneError
from cellplane.scheduler.service_plan import (
    CellCounts,
    Create,
    Delete,
    ObservedCell,
    ServiceDesired,
    ServicePlan,
    plan_service,
    steady_plan,
)
from cellplane.services import cell_batch
from cellplane.services import cells as cells_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import AffinityBody, CellCreate
from cellplane.state.models import Cell, Project, Task, Tenant
from cellplane.state.service_models import (
    REVISION_LABEL,
    SERVICE_LABEL,
    SERVICE_NAME_LABEL,
    Service,
)

__all__ = [
    "CHANGE_STEPS",
    "DELETE_STEPS",
    "SERVICES_TOPIC",
    "cell_body",
    "cell_row",
    "cells_of",
    "count_of",
    "desired_of",
    "is_settled",
    "observe",
    "observed",
    "plan_of",
    "run_pass",
    "service_principal",
    "status",
]

SERVICES_TOPIC = "services"
CHANGE_STEPS = ("CELLS", "READY")
DELETE_STEPS = ("DELETE_CELLS", "DELETED")


def cells_of(s: Session, service: Service) -> list[Cell]:
    """The service's cells: named `<service>-<n>` and carrying its label (a cell a user named
    so by hand is not one of them)."""
    rows = s.scalars(
        select(Cell)
        .where(Cell.project_id == service.project_id, Cell.name.like(f"{service.name}-%"))
        .order_by(Cell.name)
    ).all()
    return [c for c in rows if (c.labels or {}).get(SERVICE_LABEL) == service.id]


def observed(s: Session, service: Service) -> list[ObservedCell]:
    """`observe(service, cells_of(s, service))` from the columns the plan needs, without
    loading the cells (the controller looks at every unsettled service each second)."""
    rows = s.execute(
        select(Cell.id, Cell.name, Cell.labels, Cell.state, Cell.desired_state, Cell.ended_at)
        .where(Cell.project_id == service.project_id, Cell.name.like(f"{service.name}-%"))
        .order_by(Cell.name)
    )
    prefix = re.compile(re.escape(service.name) + r"-(\d+)")
    out = []
    for cid, name, labels, state, desired, ended_at in rows:
        labels = labels or {}
        if labels.get(SERVICE_LABEL) != service.id:
            continue
        m = prefix.fullmatch(name)
        raw = str(labels.get(REVISION_LABEL, "0"))
        out.append(
            ObservedCell(
                id=cid,
                ordinal=int(m.group(1)) if m else 0,
                revision=int(raw) if raw.isdigit() else 0,
                state=state,
                desired_state=desired,
                ended=ended_at is not None and desired == "RUNNING",
            )
        )
    return out


def _count(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


@functools.cache
def _count_query(sqlite: bool) -> Select[int, int, int, int]:
    """`count_of`'s statement, built once (building it cost more than running it)."""
    live = Cell.desired_state != "DELETED"
    ended = and_(Cell.ended_at.is_not(None), Cell.desired_state == "RUNNING")
    broken = and_(live, or_(Cell.state == "FAILED", ended))
    healthy = and_(live, not_(broken))
    current = func.coalesce(Cell.labels[REVISION_LABEL].as_string(), "0") == bindparam("rev")
    q = select(
        _count(live),
        _count(broken),
        _count(and_(healthy, not_(current))),
        _count(and_(healthy, current, Cell.state == "RUNNING", not_(ended))),
    ).where(
        Cell.project_id == bindparam("project"),
        Cell.name.like(bindparam("pattern")),
        Cell.labels[SERVICE_LABEL].as_string() == bindparam("service"),
    )
    if sqlite:
        # The same rows, as a range of the (project_id, name) index, which SQLite's LIKE does
        # not use: names binary-collated, every "<service>-..." sorts before "<service>.".
        q = q.where(Cell.name >= bindparam("low"), Cell.name < bindparam("high"))
    return q


def count_of(s: Session, service: Service) -> CellCounts:
    """`count_cells(observed(s, service), service.revision)` in one SQL aggregate (SQLite and
    PostgreSQL alike), without a row per cell. A revision label that is not the desired
    revision's decimal spelling counts as old (`steady_plan` then declines: the cells are read)."""
    sqlite = s.get_bind().dialect.name == "sqlite"
    params = {
        "rev": str(service.revision),
        "project": service.project_id,
        "pattern": f"{service.name}-%",
        "service": service.id,
    }
    if sqlite:
        params.update(low=f"{service.name}-", high=f"{service.name}.")
    row = s.execute(_count_query(sqlite), params).one()
    return CellCounts(*(int(v) for v in row))


def plan_of(s: Session, service: Service, now: datetime) -> ServicePlan:
    """The service's plan: from a count of its cells when it is steady (`steady_plan`: the
    common case, a service whose cells start or run), else from its cells."""
    desired = desired_of(service)
    plan = None
    if not desired.deleting and not desired.failures:
        plan = steady_plan(desired, count_of(s, service))
    return plan if plan is not None else plan_service(desired, observed(s, service), now)


def _ordinal(service: Service, cell: Cell) -> int:
    m = re.fullmatch(re.escape(service.name) + r"-(\d+)", cell.name)
    return int(m.group(1)) if m else 0


def _revision(cell: Cell) -> int:
    raw = (cell.labels or {}).get(REVISION_LABEL, "0")
    return int(raw) if str(raw).isdigit() else 0


def observe(service: Service, cells: list[Cell]) -> list[ObservedCell]:
    return [
        ObservedCell(
            id=c.id,
            ordinal=_ordinal(service, c),
            revision=_revision(c),
            state=c.state,
            desired_state=c.desired_state,
            ended=c.ended_at is not None and c.desired_state == "RUNNING",
        )
        for c in cells
    ]


def desired_of(service: Service) -> ServiceDesired:
    return ServiceDesired(
        instances=service.instances,
        revision=service.revision,
        max_unavailable=service.max_unavailable,
        max_surge=service.max_surge,
        next_ordinal=service.next_ordinal,
        deleting=service.state == "DELETING",
        failures=service.failures,
        failed_at=service.failed_at,
    )


def cell_body(service: Service, ordinal: int) -> CellCreate:
    """The cell create body of the service's cell number `ordinal`: its template, its name, its
    labels, and a soft anti-affinity with its sibling cells (spread across hosts)."""
    t = dict(service.template)
    labels = {
        **(t.get("labels") or {}),
        SERVICE_LABEL: service.id,
        SERVICE_NAME_LABEL: service.name,
        REVISION_LABEL: str(service.revision),
    }
    spread = AffinityBody(selector={SERVICE_LABEL: service.id}, anti=True, soft=True)
    affinity = [*(t.get("affinity") or []), spread.model_dump()]
    t.pop("name", None)
    return CellCreate.model_validate(
        {**t, "name": f"{service.name}-{ordinal}", "labels": labels, "affinity": affinity}
    )


def service_principal(s: Session, service: Service) -> Principal:
    """Who the controller acts as for the service: a service account of its tenant, named after
    whoever created it (as the cluster executor does)."""
    p = s.get(Project, service.project_id)
    assert p is not None
    t = s.get(Tenant, p.tenant_id)
    return Principal(
        subject=service.created_by or f"service:{service.name}",
        tenant_id=p.tenant_id,
        tenant=t.name if t else "",
        roles=("project-member",),
        kind="service",
    )


def _create_batch(
    svc: Services, s: Session, principal: Principal, service: Service, count: int, now: datetime
) -> list[str]:
    """Create `count` cells of the service at once (`cell_batch`): the next free ordinals (never
    reused; one a cell made by hand took is skipped), admitted and placed together."""
    project = s.get(Project, service.project_id)
    assert project is not None
    taken = set(
        s.scalars(
            select(Cell.name).where(
                Cell.project_id == project.id, Cell.name.like(f"{service.name}-%")
            )
        )
    )
    names: list[str] = []
    ordinal = service.next_ordinal
    while len(names) < count:
        if f"{service.name}-{ordinal}" not in taken:
            names.append(f"{service.name}-{ordinal}")
        ordinal += 1
    spread = scheduler.Affinity({SERVICE_LABEL: service.id}, anti=True, soft=True)
    body = cell_body(service, service.next_ordinal)
    out = cell_batch.create_many(svc, s, principal, project, body, names, now, spread_term=spread)
    service.next_ordinal = ordinal
    return list(out.topics)


def _create(
    svc: Services, s: Session, principal: Principal, service: Service, action: Create
) -> list[str]:
    project = s.get(Project, service.project_id)
    assert project is not None
    ordinal = max(action.ordinal, service.next_ordinal)
    # Ordinals are never reused; one taken by a cell made by hand is skipped.
    while s.scalar(
        select(Cell.id).where(
            Cell.project_id == project.id, Cell.name == f"{service.name}-{ordinal}"
        )
    ):
        ordinal += 1
    out = cells_mod.create(svc, s, principal, project.name, cell_body(service, ordinal))
    service.next_ordinal = ordinal + 1
    return list(out.topics)


def _record(task: Task | None, plan: ServicePlan, service: Service, now: datetime) -> bool:
    """Advance the service's task by the plan; whether it changed."""
    if task is None or task.state in tasks_mod.TERMINAL:
        return False
    if service.state == "DELETING":
        if plan.converged:
            return tasks_mod.advance(task, "DELETED", "COMPLETED", now)
        return tasks_mod.advance(task, "DELETE_CELLS", "STARTED", now, message=f"{plan.live} left")
    n = service.instances
    message = f"{plan.ready}/{n} ready at revision {service.revision}; {plan.live} alive"
    if service.message:
        message += f"; {service.message}"
    if plan.converged:
        return tasks_mod.advance(task, "READY", "COMPLETED", now)
    changed = tasks_mod.advance(task, "CELLS", "STARTED", now, message=message)
    progress = min(99, int(100 * plan.ready / n)) if n else 99
    if task.progress != progress:
        task.progress, changed = progress, True
    return changed


def is_settled(s: Session, service: Service, now: datetime) -> bool:
    """Whether a pass would change nothing: no action to take, no task to advance, nothing to
    record. The controller checks it in a read transaction before opening a write one."""
    plan = plan_of(s, service, now)
    if (
        plan.actions
        or service.state == "DELETING"
        or service.message is not None
        or (plan.converged and service.failures)
    ):
        return False
    task = s.get(Task, service.task_id) if service.task_id else None
    if task is None or task.state in tasks_mod.TERMINAL:
        return True
    if plan.converged:
        return False  # the pass completes the task
    # A task in progress whose record would not change (no cell became ready since the last
    # pass): tried on a copy, the reader's row stays as read.
    copy = Task(
        state=task.state,
        steps=[dict(st) for st in task.steps],
        progress=task.progress,
        started_at=task.started_at,
    )
    return not _record(copy, plan, service, now)


def run_pass(
    svc: Services,
    s: Session,
    service: Service,
    now: datetime,
    *,
    principal: Principal | None = None,
    strict: bool = False,
) -> tuple[ServicePlan, list[str]]:
    """One reconcile pass of `service` in the caller's transaction; returns the plan and the
    topics to publish after commit. `strict` (the API's first pass): any refusal (quota, capacity,
    a template that no longer validates) propagates, and the caller's transaction is rolled back;
    else it is recorded on the service (`message`) and the pass goes on with what it can do."""
    who = principal or service_principal(s, service)
    plan = plan_of(s, service, now)
    topics: list[str] = []
    problem: str | None = None
    failed = 0
    creates = [a for a in plan.actions if isinstance(a, Create)]
    for action in plan.actions:
        if isinstance(action, Delete):
            failed += action.reason == "failed"
            out = cells_mod.delete(svc, s, who, action.cell_id, owner=service.id)
            topics += out.topics
    # Without volumes (bound per cell), every cell the plan wants is made in one batch.
    batch = bool(creates) and not service.template.get("volumes")
    for action in [creates[0]] if batch else creates:
        try:
            if batch:
                topics += _create_batch(svc, s, who, service, len(creates), now)
            else:
                topics += _create(svc, s, who, service, action)
        except CellplaneError as exc:
            if strict:
                raise
            problem = f"cannot create a cell: {exc}"
            break
    if failed:
        service.failures += failed
        service.failed_at = now
    elif plan.converged:
        service.failures = 0
    if plan.held_until is not None:
        problem = f"cells keep failing: the next replacement waits until {plan.held_until}"
    service.message = problem
    if plan.converged and service.state == "DELETING":
        s.delete(service)
    task = s.get(Task, service.task_id) if service.task_id else None
    if _record(task, plan, service, now) and task is not None:
        topics.append(f"task:{task.id}")
    if topics:
        topics.append(f"service:{service.id}")
    return plan, topics


def status(service: Service, plan: ServicePlan) -> str:
    if service.state == "DELETING":
        return "DELETING"
    return "READY" if plan.converged else "PROGRESSING"


def cell_row(service: Service, c: Cell) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "desired_state": c.desired_state,
        "revision": _revision(c),
        "host_id": c.host_id,
    }
