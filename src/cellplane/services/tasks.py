"""Tasks: asynchronous operations with steps, state and progress.

Services create a task in the same transaction as the change it tracks; the controller and the agent
status handler advance it. The step arithmetic is pure (time comes in as an argument) and unit-tested.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import NotFound
from cellplane.metrics import TASK_SECONDS
from cellplane.services.context import Principal, Services
from cellplane.state.cluster_models import Cluster
from cellplane.state.models import Cell, Task, Volume
from cellplane.state.service_models import Service

__all__ = [
    "CREATE_STEPS",
    "DELETE_STEPS",
    "PREPARE_STEPS",
    "START_STEPS",
    "STOP_STEPS",
    "advance",
    "fail",
    "list_tasks",
    "new_task",
    "task_view",
    "visible_task",
]

CREATE_STEPS = ("SCHEDULE", "PREPARE_IMAGE", "CREATE", "START", "RUNNING")
START_STEPS = ("SCHEDULE", "START", "RUNNING")
#: A cell made but not started (`docker create`): done once its container exists.
PREPARE_STEPS = ("SCHEDULE", "PREPARE_IMAGE", "CREATE")
STOP_STEPS = ("STOP",)
DELETE_STEPS = ("STOP", "DELETE")
TERMINAL = frozenset({"COMPLETED", "ERROR"})


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def new_task(
    session: Session,
    *,
    task_id: str,
    kind: str,
    entity_kind: str,
    entity_id: str,
    tenant_id: str | None,
    steps: tuple[str, ...],
    now: datetime,
    project_id: str | None = None,
) -> Task:
    task = Task(
        id=task_id,
        kind=kind,
        state="QUEUED",
        entity_kind=entity_kind,
        entity_id=entity_id,
        tenant_id=tenant_id,
        project_id=project_id,
        steps=[
            {"name": s, "state": "QUEUED", "started_at": None, "finished_at": None, "error": None}
            for s in steps
        ],
        progress=0,
        created_at=now,
    )
    session.add(task)
    return task


def advance(
    task: Task, step: str, state: str, now: datetime, *, message: str | None = None
) -> bool:
    """Move `step` to `state` ("STARTED" or "COMPLETED"); earlier steps complete with it.

    Returns whether anything changed. A step that the task does not have is ignored, so callers can
    report progress uniformly for every kind of task. Terminal tasks do not move.
    """
    if task.state in TERMINAL:
        return False
    names = [s["name"] for s in task.steps]
    if step not in names:
        return False
    idx = names.index(step)
    steps = [dict(s) for s in task.steps]
    changed = False
    for i, s in enumerate(steps):
        target = state if i == idx else ("COMPLETED" if i < idx else None)
        if target is None or s["state"] == "COMPLETED" or s["state"] == target:
            if i == idx and message and s.get("message") != message:
                s["message"] = message
                changed = True
            continue
        if s["started_at"] is None:
            s["started_at"] = now.isoformat()
        if target == "COMPLETED":
            s["finished_at"] = now.isoformat()
        s["state"] = target
        if i == idx and message:
            s["message"] = message
        changed = True
    if not changed:
        return False
    task.steps = steps
    done = sum(1 for s in steps if s["state"] == "COMPLETED")
    task.progress = int(100 * done / len(steps))
    if task.started_at is None:
        task.started_at = now
    if done == len(steps):
        task.state = "COMPLETED"
        task.finished_at = now
        _observe(task)
    else:
        task.state = "STARTED"
    return True


def fail(task: Task, error: str, now: datetime, *, step: str | None = None) -> bool:
    """Put the task in ERROR; the running (or named) step carries the error."""
    if task.state in TERMINAL:
        return False
    steps = [dict(s) for s in task.steps]
    target = None
    for s in steps:
        if (step and s["name"] == step) or (not step and s["state"] in ("STARTED", "QUEUED")):
            target = s
            break
    if target is not None:
        target["state"] = "ERROR"
        target["error"] = error
        target["finished_at"] = now.isoformat()
        target["started_at"] = target["started_at"] or now.isoformat()
    task.steps = steps
    task.state = "ERROR"
    task.error = error
    task.finished_at = now
    task.started_at = task.started_at or now
    _observe(task)
    return True


def _observe(task: Task) -> None:
    if task.finished_at is not None and task.created_at is not None:
        created = task.created_at
        if created.tzinfo is None and task.finished_at.tzinfo is not None:
            created = created.replace(tzinfo=task.finished_at.tzinfo)
        TASK_SECONDS.labels(task.kind, task.state).observe(
            max(0.0, (task.finished_at - created).total_seconds())
        )


def task_view(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": task.kind,
        "state": task.state,
        "entity": {"kind": task.entity_kind, "id": task.entity_id},
        "progress": task.progress,
        "steps": task.steps,
        "error": task.error,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
    }


def _entity_name(s: Session, t: Task) -> str | None:
    kinds: dict[str, Any] = {"cell": Cell, "volume": Volume, "cluster": Cluster, "service": Service}
    model = kinds.get(t.entity_kind)
    entity = s.get(model, t.entity_id) if model is not None else None
    return getattr(entity, "name", None)


def _named_view(s: Session, t: Task) -> dict[str, Any]:
    """The task with its entity's name (null once the entity is gone): people know names."""
    view = task_view(t)
    view["entity"]["name"] = _entity_name(s, t)
    return view


def list_tasks(
    svc: Services, p: Principal, project: str, limit: int = 20, *, state: str | None = None
) -> dict[str, Any]:
    """The project's most recent tasks (of one `state` when given), newest first
    (`GET /v1/projects/{project}/tasks?limit=`; the portal's tasks page filters by state)."""
    from cellplane.services.cells import project_for  # cells imports this module

    with svc.db.reader() as s:
        proj = project_for(s, p, project, "tasks:read")
        q = select(Task).where(Task.project_id == proj.id)
        if state is not None:
            q = q.where(Task.state == state)
        rows = s.scalars(
            q.order_by(Task.created_at.desc(), Task.id.desc()).limit(max(1, min(limit, 200)))
        ).all()
        return {"items": [_named_view(s, t) for t in rows], "next_cursor": None}


def visible_task(svc: Services, p: Principal, task_id: str) -> dict[str, Any]:
    """A task of the caller's tenant (and, for project-scoped callers, of their projects); tasks of
    no tenant (hosts, images) are the system admins'. Any other task does not exist for them.

    Called by ``GET /v1/tasks/{id}`` and its event stream (:mod:`cellplane.api.routes_ops`)."""
    with svc.db.reader() as s:
        t = s.get(Task, task_id)
        missing = NotFound(f"task {task_id!r} does not exist")
        if t is None:
            raise missing
        if t.tenant_id is None:
            if not p.is_system_admin:
                raise missing
        elif t.tenant_id != p.tenant_id:
            raise missing
        else:
            project_id = t.project_id or _task_project(s, t)
            if project_id is not None and not p.sees_project(project_id):
                raise missing
        return _named_view(s, t)


def _task_project(s: Session, t: Task) -> str | None:
    kinds: dict[str, Any] = {"cell": Cell, "volume": Volume, "cluster": Cluster, "service": Service}
    model = kinds.get(t.entity_kind)
    entity = s.get(model, t.entity_id) if model is not None else None
    return getattr(entity, "project_id", None)
