"""Changes to an existing cell that need no new container: a new name, new CPU/memory limits, a
new restart policy, a pause.

Used by the Docker-compatible endpoint (`docker rename`, `docker update`). A rename follows the
rules of a create (a DNS label, unique in the project); new limits are admitted against the
project's and tenant's quotas as a create is (only the increase counts). The running container's
limits are changed through its host agent by the caller; these functions change the record,
which the next start of the container uses.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from cellplane.errors import Conflict, ValidationFailed
from cellplane.ids import utcnow
from cellplane.services import audit
from cellplane.services import quotas as quotas_mod
from cellplane.services.cells import _view, _visible, bump_host
from cellplane.services.context import Principal, Services
from cellplane.state.models import Cell, CellEvent, Project
from cellplane.validation import DNS_LABEL_MSG, is_dns_label

__all__ = ["RESTART_POLICIES", "rename", "resize", "set_paused", "set_restart"]

RESTART_POLICIES = ("never", "on-failure", "always")


def rename(svc: Services, principal: Principal, cell_id: str, new_name: str) -> dict[str, Any]:
    """Give the cell `new_name`; Conflict if another cell of its project has it."""
    if not is_dns_label(new_name):
        raise ValidationFailed.field("name", DNS_LABEL_MSG)
    with svc.db.session() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
        if cell.desired_state == "DELETED":
            raise Conflict(f"cell {cell.name!r} is being removed")
        old = cell.name
        if new_name != old:
            taken = s.scalar(
                select(Cell.id).where(Cell.project_id == cell.project_id, Cell.name == new_name)
            )
            if taken:
                raise Conflict(f"a cell named {new_name!r} already exists in this project")
            now = utcnow()
            cell.name = new_name
            cell.updated_at = now
            s.add(CellEvent(cell_id=cell.id, at=now, type="renamed", message=f"from {old}"))
            audit.record_cell(s, principal, cell, "cell.rename", {"from": old, "to": new_name})
        s.flush()
        view = _view(s, cell)
    svc.notifier.publish(f"cell:{cell_id}")
    return view


def resize(
    svc: Services,
    principal: Principal,
    cell_id: str,
    *,
    cpu: float | None = None,
    memory_mb: int | None = None,
) -> dict[str, Any]:
    """Set the cell's CPU (cores) and/or memory (MiB); an increase must fit the quotas.

    Its host's agent is sent the new limits, which it sets on each later start of the container
    (a restart by its policy, `docker start`)."""
    if cpu is not None and not (0 < cpu <= 1024 and math.isfinite(cpu)):
        raise ValidationFailed.field("cpu", "must be more than 0 and at most 1024")
    if memory_mb is not None and not 6 <= memory_mb <= 4 * 1024 * 1024:
        raise ValidationFailed.field("memory_mb", "must be between 6 and 4194304")
    topics = [f"cell:{cell_id}"]
    with svc.db.session() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
        if cell.desired_state == "DELETED":
            raise Conflict(f"cell {cell.name!r} is being removed")
        project = s.get(Project, cell.project_id)
        new_cpu = cell.cpu if cpu is None else cpu
        new_mem = cell.memory_mb if memory_mb is None else memory_mb
        if project is not None:
            quotas_mod.admit(
                s,
                tenant_id=project.tenant_id,
                project_id=project.id,
                cpu=max(0.0, new_cpu - cell.cpu),
                memory_mb=max(0, new_mem - cell.memory_mb),
            )
        if (new_cpu, new_mem) != (cell.cpu, cell.memory_mb):
            now = utcnow()
            message = f"cpu {cell.cpu:g} -> {new_cpu:g}, memory {cell.memory_mb} -> {new_mem} MB"
            cell.cpu, cell.memory_mb, cell.flavor = new_cpu, new_mem, None
            cell.updated_at = now
            if cell.host_id is not None:  # in the agent's next assignments
                cell.host_rev = bump_host(s, cell.host_id)
                topics.append(f"host:{cell.host_id}")
            s.add(CellEvent(cell_id=cell.id, at=now, type="resized", message=message))
            audit.record_cell(
                s, principal, cell, "cell.resize", {"cpu": new_cpu, "memory_mb": new_mem}
            )
        s.flush()
        view = _view(s, cell)
    svc.notifier.publish(*topics)
    return view


def set_restart(
    svc: Services,
    principal: Principal,
    cell_id: str,
    policy: str,
    max_retries: int | None = None,
    labels: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Give the cell a new restart policy (`max_retries`: on-failure's limit, None: none), and
    set (None: remove) the `labels` given with it. Its host's agent, which restarts the cell's
    container, is sent the new policy; the container is not touched."""
    if policy not in RESTART_POLICIES:
        raise ValidationFailed.field("restart.policy", f"must be one of {list(RESTART_POLICIES)}")
    if max_retries is not None and (policy != "on-failure" or not 0 <= max_retries <= 1000):
        raise ValidationFailed.field(
            "restart.max_retries", "only with on-failure, and between 0 and 1000"
        )
    topics = [f"cell:{cell_id}"]
    with svc.db.session() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
        if cell.desired_state == "DELETED":
            raise Conflict(f"cell {cell.name!r} is being removed")
        new_labels = dict(cell.labels or {})
        for key, value in (labels or {}).items():
            if value is None:
                new_labels.pop(key, None)
            else:
                new_labels[key] = value
        old = (cell.restart_policy, cell.max_retries)
        if (policy, max_retries) != old or new_labels != (cell.labels or {}):
            now = utcnow()
            cell.restart_policy, cell.max_retries, cell.labels = policy, max_retries, new_labels
            cell.updated_at = now
            if cell.host_id is not None:  # in the agent's next assignments
                cell.host_rev = bump_host(s, cell.host_id)
                topics.append(f"host:{cell.host_id}")
            message = f"restart policy {old[0]} -> {policy}"
            s.add(CellEvent(cell_id=cell.id, at=now, type="updated", message=message))
            audit.record_cell(
                s, principal, cell, "cell.update", {"restart": policy, "max_retries": max_retries}
            )
        s.flush()
        view = _view(s, cell)
    svc.notifier.publish(*topics)
    return view


def set_paused(svc: Services, principal: Principal, cell_id: str, paused: bool) -> dict[str, Any]:
    """Record that the cell's running container was frozen (`paused`) or thawed by its host's
    agent (`docker pause`/`unpause`, which the caller asked the agent for): PAUSED or RUNNING.
    The agent reports the same from then on (a paused container is `paused` in its engine)."""
    with svc.db.session() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
        if cell.desired_state not in ("RUNNING", "CREATED"):
            raise Conflict(f"cell {cell.name!r} is not meant to run")
        new = "PAUSED" if paused else "RUNNING"
        if cell.state != new:
            now = utcnow()
            cell.state, cell.message, cell.updated_at = new, None, now
            kind = "paused" if paused else "unpaused"
            s.add(CellEvent(cell_id=cell.id, at=now, type=kind, message=f"by {principal.subject}"))
            audit.record_cell(s, principal, cell, f"cell.{kind[:-1]}", {})
        s.flush()
        view = _view(s, cell)
    svc.notifier.publish(f"cell:{cell_id}")
    return view
