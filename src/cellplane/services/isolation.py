"""Isolation classes: a cell's class, the tenant's and project's minimum, the known gaps.

`standard` cells share the host's kernel (runc); `sandbox` cells run on gVisor's user-space
kernel (`runsc`). A host offers the classes its agent found its engine can run
(`services.hosts.register`); the scheduler places a cell only on a host offering its class.

Policy: a tenant and a project may each require a minimum class (`min_isolation`); the stronger
of the two binds. A cell that asks for less is refused naming the policy; a cell that asks for
nothing gets the minimum. Setting a policy never changes existing cells: the answer lists the
ones below it. Called by `services.cells.create`, the tenant and project update routes, the
cluster executor (node groups) and the Docker endpoint (`--runtime`).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Forbidden, ValidationFailed
from cellplane.scheduler import ISOLATION_CLASSES
from cellplane.state.models import Cell, Project, Tenant

__all__ = [
    "CLASSES",
    "GAPS",
    "admit",
    "below",
    "cells_below",
    "check_class",
    "policy",
    "set_minimum",
    "stronger",
]

CLASSES: Final = ISOLATION_CLASSES
_RANK: Final = {c: i for i, c in enumerate(CLASSES)}

#: What a sandboxed cell does differently from a standard one (docs/isolation.md), said when
#: such a cell is created.
GAPS: Final = (
    "the kernel seen inside is gVisor's (uname 4.4.0, its own dmesg); system calls gVisor does "
    "not implement fail with ENOSYS",
    "file I/O (root filesystem and volumes) goes through gVisor's gofer: slower than standard",
    "exec with a terminal (-t) gets one, but as a host file gVisor imports: tty and /dev/tty "
    "cannot name it (as for run -t under gVisor)",
)


def check_class(value: str, field: str = "isolation") -> str:
    """`value` if it names an isolation class; a ValidationFailed naming `field` otherwise."""
    if value not in _RANK:
        raise ValidationFailed.field(
            field, f"unknown isolation class {value!r}; one of {', '.join(CLASSES)}"
        )
    return value


def below(cls: str, minimum: str) -> bool:
    """Whether class `cls` is weaker than `minimum`."""
    return _RANK[cls] < _RANK[minimum]


def stronger(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if _RANK[a] >= _RANK[b] else b


def policy(s: Session, project: Project) -> tuple[str, str] | None:
    """The binding minimum class for cells of `project` and who set it ("tenant acme")."""
    tenant = s.get(Tenant, project.tenant_id)
    t_min = tenant.min_isolation if tenant is not None else None
    p_min = project.min_isolation
    best = stronger(t_min, p_min)
    if best is None:
        return None
    if best == t_min and tenant is not None:
        return best, f"tenant {tenant.name}"
    return best, f"project {project.name}"


def admit(s: Session, project: Project, requested: str | None, what: str = "cell") -> str:
    """The class a new cell (or `what`: a service's cells) of `project` runs with; refuses one
    below the policy."""
    found = policy(s, project)
    if requested is None:
        return found[0] if found else "standard"
    check_class(requested)
    if found is not None and below(requested, found[0]):
        minimum, owner = found
        raise Forbidden(
            f"{owner} requires isolation class {minimum} or stronger (its isolation policy): "
            f"a {requested} {what} is refused; ask for isolation {minimum}"
        )
    return requested


def cells_below(s: Session, project_ids: list[str], minimum: str | None) -> list[dict[str, Any]]:
    """Existing cells of those projects below `minimum` (left as they are, reported)."""
    if minimum is None or not project_ids:
        return []
    weaker = [c for c in CLASSES if below(c, minimum)]
    rows = s.execute(
        select(Cell.id, Cell.name, Project.name, Cell.isolation)
        .join(Project, Project.id == Cell.project_id)
        .where(Cell.project_id.in_(project_ids), Cell.isolation.in_(weaker))
        .order_by(Project.name, Cell.name)
    )
    return [
        {"id": cid, "name": name, "project": pname, "isolation": iso}
        for cid, name, pname, iso in rows
    ]


def set_minimum(s: Session, owner: Tenant | Project, minimum: str | None) -> list[dict[str, Any]]:
    """Set `owner`'s minimum class (`standard` means none); returns its existing cells below it,
    which keep running as they are."""
    owner.min_isolation = None if minimum in (None, "standard") else check_class(str(minimum))
    if isinstance(owner, Tenant):
        ids = list(s.scalars(select(Project.id).where(Project.tenant_id == owner.id)))
    else:
        ids = [owner.id]
    return cells_below(s, ids, owner.min_isolation)
