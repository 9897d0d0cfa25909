"""Cells: the developer API's rules. Admission, desired state, tasks; the controller and agent do the rest.

Called by `cellplane.api.routes_cells`. Every change is one transaction that writes the desired state,
a task and (for POSTs) the idempotency record; then the controller or the host's agent is woken.
"""

from __future__ import annotations

import base64
import contextlib
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientCapacity,
    NotFound,
    ValidationFailed,
)
from cellplane.ids import is_id, new_id, utcnow
from cellplane.services import admission, audit, capacity, cell_mounts, cell_networks, isolation
from cellplane.services import hosts as hosts_mod
from cellplane.services import quotas as quotas_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome
from cellplane.services.schemas import CellCreate
from cellplane.services.views import cell_view
from cellplane.state.cluster_models import Cluster
from cellplane.state.conflicts import lock_cell_host
from cellplane.state.models import (
    Cell,
    CellEvent,
    Flavor,
    Host,
    Image,
    Project,
    Task,
    Tenant,
)
from cellplane.state.service_models import SERVICE_LABEL, Service

__all__ = [
    "CLUSTER_LABEL",
    "HOST_LABEL",
    "bump_host",
    "check_project",
    "create",
    "decode_cursor",
    "delete",
    "encode_cursor",
    "get",
    "list_cells",
    "placement_request",
    "project_for",
    "resolve_size",
    "restart",
    "start",
    "stop",
    "with_host_labels",
]

# Every host carries this label in the scheduler's snapshot; cells bound to a host-local volume ask for it.
HOST_LABEL = "cellplane.host"
# The label the cluster executor puts on a node's cell: the id of the cluster that owns it.
CLUSTER_LABEL = "cellplane.cluster"
MAX_EVENTS = 50


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor from `encode_cursor` stands for; anything else is refused (400), never
    decoded leniently (urlsafe_b64decode skips characters outside its alphabet)."""
    last_id = ""
    if len(cursor) <= 64 and _CURSOR.fullmatch(cursor):
        with contextlib.suppress(ValueError):
            last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    if not is_id(last_id) or encode_cursor(last_id) != cursor:
        raise BadRequest.field("cursor", "is not a cursor this server issued")
    return last_id


_CURSOR = re.compile(r"[A-Za-z0-9_-]+")


def project_for(
    s: Session, principal: Principal, name: str, permission: str = "projects:read"
) -> Project:
    """The caller's project by name (or id) where they hold `permission`. Other tenants'
    projects, and projects of their own tenant the caller has no role in, do not exist for the
    caller (404); a project they see but may not act in answers 403."""
    p = s.scalar(
        select(Project).where(
            (Project.tenant_id == principal.tenant_id)
            & ((Project.name == name) | (Project.id == name))
        )
    )
    if p is None or not principal.sees_project(p.id):
        raise NotFound(f"project {name!r} does not exist")
    if not principal.can_in(p.id, permission):
        raise Forbidden(f"this needs the {permission!r} permission in project {p.name!r}")
    return p


def check_project(
    s: Session, principal: Principal, project_id: str, permission: str, what: str
) -> Project:
    """The project of a resource, if the caller may see it and holds `permission` there.

    `what` names the resource for the 404 ("cell 'cel-...'"), so a resource of another tenant or
    of an invisible project is indistinguishable from one that does not exist.
    """
    p = s.get(Project, project_id)
    if p is None or p.tenant_id != principal.tenant_id or not principal.sees_project(p.id):
        raise NotFound(f"{what} does not exist")
    if not principal.can_in(p.id, permission):
        raise Forbidden(f"this needs the {permission!r} permission in project {p.name!r}")
    return p


def _visible(
    s: Session, principal: Principal, cell: Cell | None, cell_id: str, permission: str
) -> Cell:
    if cell is None:
        raise NotFound(f"cell {cell_id!r} does not exist")
    check_project(s, principal, cell.project_id, permission, f"cell {cell_id!r}")
    return cell


def bump_host(s: Session, host_id: str) -> int:
    """Atomically advance the host's revision; the caller stamps changed cells with it."""
    bump = update(Host).where(Host.id == host_id).values(revision=Host.revision + 1)
    return int(s.execute(bump.returning(Host.revision)).scalar_one())


def placement_request(cell: Cell, host_id_for_volumes: str | None) -> scheduler.PlacementRequest:
    # Volumes bind first (the data is there); else a pin (a cluster node's planned host).
    pinned = host_id_for_volumes or cell.pinned_host_id
    labels = {HOST_LABEL: pinned} if pinned else {}
    return scheduler.PlacementRequest(
        policy=cell.placement or scheduler.SPREAD,
        cell_labels=dict(cell.labels or {}),
        affinity=tuple(
            scheduler.Affinity(dict(a["selector"]), bool(a.get("anti")), bool(a.get("soft")))
            for a in cell.affinity or []
        ),
        id=cell.id,
        resources=scheduler.Resources(cell.cpu, cell.memory_mb, cell.disk_gb),
        labels=labels,
        ports=frozenset(
            (p.get("protocol", "tcp"), int(p["host_port"]))
            for p in cell.ports
            if p.get("host_port")
        ),
        isolation=cell.isolation or "standard",
    )


def _supersede(s: Session, cell: Cell, new_task: Task, now: datetime) -> None:
    if cell.task_id:
        old = s.get(Task, cell.task_id)
        if old is not None:
            tasks_mod.fail(old, f"superseded by {new_task.kind} task {new_task.id}", now)
    cell.task_id = new_task.id


def _view(
    s: Session,
    cell: Cell,
    with_events: bool = True,
    networks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    p = s.get(Project, cell.project_id)
    t = s.get(Tenant, p.tenant_id) if p else None
    img = s.get(Image, cell.image_id)
    events = (
        list(
            reversed(
                s.scalars(
                    select(CellEvent)
                    .where(CellEvent.cell_id == cell.id)
                    .order_by(CellEvent.id.desc())
                    .limit(MAX_EVENTS)
                ).all()
            )
        )
        if with_events
        else []
    )
    host = s.get(Host, cell.host_id) if cell.host_id else None
    return cell_view(
        cell,
        project=p.name if p else "",
        tenant=t.name if t else "",
        image=img.name if img else cell.image_id,
        events=events,
        host_name=host.name if host else None,
        networks=cell_networks.listing(s, cell.id) if networks is None else networks,
    )


def resolve_size(s: Session, body: CellCreate) -> tuple[float, int, int, str | None]:
    """The cell's (cpu, memory_mb, disk_gb, flavor) from its flavor or its own sizes."""
    cpu_given, mem_given = body.cpu, body.memory_mb
    if body.flavor is None and (cpu_given is None) != (mem_given is None):
        # One of cpu/memory given: the other comes from the nearest flavor (docs/api.md).
        near = capacity.nearest_flavor(
            [(f.name, f.cpu, f.memory_mb) for f in s.scalars(select(Flavor))],
            cpu=cpu_given,
            memory_mb=mem_given,
        )
        if near is None:
            raise ValidationFailed.field("memory_mb", "no flavor to size the cell from; give both")
        cpu_given = cpu_given if cpu_given is not None else near[1]
        mem_given = mem_given if mem_given is not None else near[2]
    if body.flavor is not None or cpu_given is None:
        fname = body.flavor or "SMALL"
        flavor = s.get(Flavor, fname)
        if flavor is None:
            raise ValidationFailed.field("flavor", f"flavor {fname!r} does not exist")
        cpu, mem, disk = flavor.cpu, flavor.memory_mb, flavor.disk_gb
        flavor_name: str | None = flavor.name
    else:
        assert mem_given is not None
        cpu, mem, disk, flavor_name = cpu_given, mem_given, 0, None
    if body.disk_gb is not None:
        disk = body.disk_gb
    return cpu, mem, disk, flavor_name


def create(
    svc: Services,
    s: Session,
    principal: Principal,
    project_name: str,
    body: CellCreate,
    *,
    pin_host: str | None = None,
    prepare: bool = False,
) -> Outcome:
    """Admit a cell. `pin_host` (not part of the API body) keeps it on one host: the cluster
    executor places a cluster's nodes as a whole, with their group's policies.

    `prepare` (`docker create`): desired CREATED, placed, its container made, not started."""
    now = utcnow()
    project = project_for(s, principal, project_name, "cells:write")
    image = s.scalar(select(Image).where((Image.name == body.image) | (Image.id == body.image)))
    if image is None:
        raise ValidationFailed.field("image", f"image {body.image!r} does not exist")
    cpu, mem, disk, flavor_name = resolve_size(s, body)
    if s.scalar(select(Cell.id).where(Cell.project_id == project.id, Cell.name == body.name)):
        raise Conflict(f"a cell named {body.name!r} already exists in project {project.name!r}")
    iso = isolation.admit(s, project, body.isolation)
    bound_host = cell_mounts.check_mounts(svc, s, project, body.volumes)
    quotas_mod.admit(
        s,
        tenant_id=project.tenant_id,
        project_id=project.id,
        cpu=cpu,
        memory_mb=mem,
        disk_gb=disk,
        cells=1,
    )
    cell = Cell(
        id=new_id("cel"),
        project_id=project.id,
        name=body.name,
        image_id=image.id,
        flavor=flavor_name,
        cpu=cpu,
        memory_mb=mem,
        disk_gb=disk,
        command=body.command,
        entrypoint=body.entrypoint,
        workdir=body.workdir,
        user=body.user,
        hostname=body.hostname,
        env=body.env,
        labels=body.labels,
        ports=[p.model_dump() for p in body.ports],
        volumes=cell_mounts.stored(body.volumes),
        restart_policy=body.restart.policy,
        max_retries=body.restart.max_retries,
        isolation=iso,
        stop_timeout=body.stop_timeout,
        healthcheck=body.healthcheck and body.healthcheck.model_dump(),
        read_only=body.read_only,
        pids_limit=body.pids_limit,
        desired_state="CREATED" if prepare else "RUNNING" if body.start else "STOPPED",
        state="PENDING",
        restarts=0,
        host_rev=0,
        pinned_host_id=pin_host,
        placement=body.placement,
        affinity=[a.model_dump() for a in body.affinity] or None,
        generation=1,
        network_id=(nets := cell_networks.resolve(s, project.id, body))[0],
        created_at=now,
        updated_at=now,
    )
    reason = admission.explain(
        svc.admission,
        placement_request(cell, bound_host),
        lambda detail: with_host_labels(hosts_mod.snapshot(s, svc, now, detail=detail)),
    )
    if reason is not None:
        raise InsufficientCapacity(reason)
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind="CREATE_CELL",
        entity_kind="cell",
        entity_id=cell.id,
        tenant_id=project.tenant_id,
        project_id=project.id,
        steps=tasks_mod.PREPARE_STEPS if prepare else tasks_mod.CREATE_STEPS,
        now=now,
    )
    cell.task_id = task.id
    s.add(cell)
    cell_networks.attach(s, cell, nets)
    s.add(CellEvent(cell_id=cell.id, at=now, type="accepted", message=f"by {principal.subject}"))
    if iso == "sandbox":  # what a sandbox does differently, said at creation (known gaps)
        gaps = "; ".join(isolation.GAPS)
        s.add(CellEvent(cell_id=cell.id, at=now, type="isolation", message=f"sandbox: {gaps}"))
    s.flush()
    return Outcome(
        202, tasks_mod.task_view(task), f"/v1/tasks/{task.id}", ("controller", f"task:{task.id}")
    )


def with_host_labels(hosts: list[scheduler.HostSnapshot]) -> list[scheduler.HostSnapshot]:
    """Give every host the label `cellplane.host=<id>` so requests can pin themselves to one."""
    return [
        scheduler.HostSnapshot(
            id=h.id,
            state=h.state,
            capacity=h.capacity,
            used=h.used,
            labels={**h.labels, HOST_LABEL: h.id},
            zone=h.zone,
            used_ports=h.used_ports,
            groups=h.groups,
            cells=h.cells,
            isolation=h.isolation,
        )
        for h in hosts
    ]


def list_cells(
    svc: Services,
    principal: Principal,
    project_name: str,
    *,
    labels: dict[str, str],
    name: str | None,
    state: str | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    with svc.db.reader() as s:
        project = project_for(s, principal, project_name, "cells:read")
        q: Select[Cell] = select(Cell).where(Cell.project_id == project.id)
        if name:
            q = q.where(Cell.name == name)
        if state:
            q = q.where(Cell.state == state.upper())
        if cursor:
            q = q.where(Cell.id > decode_cursor(cursor))
        q = q.order_by(Cell.id)
        if not labels:  # no filter in Python: the page and one more row are all that is read
            q = q.limit(limit + 1)
        # `_view` looks up each cell's project, tenant, image and host by key: read for the whole
        # page at once (IN queries), and kept alive here (the identity map holds them weakly).
        # A page of a service spread over many hosts read each cell's host and networks alone.
        keep: dict[tuple[type, str], Any] = {(Project, project.id): project}
        keep[(Tenant, project.tenant_id)] = s.get(Tenant, project.tenant_id)
        page: list[Cell] = []
        more = False
        # Label filters run in Python: JSON containment is not portable across SQLite and PostgreSQL.
        for cell in s.scalars(q).yield_per(500):
            if any(cell.labels.get(k) != v for k, v in labels.items()):
                continue
            if len(page) == limit:
                more = True
                break
            page.append(cell)
        images = select(Image).where(Image.id.in_({c.image_id for c in page}))
        hosts = select(Host).where(Host.id.in_({c.host_id for c in page if c.host_id}))
        keep.update({(Image, i.id): i for i in s.scalars(images)})
        keep.update({(Host, h.id): h for h in s.scalars(hosts)})
        nets = cell_networks.listings(s, [c.id for c in page])
        items = [_view(s, c, with_events=False, networks=nets.get(c.id, [])) for c in page]
        return {"items": items, "next_cursor": encode_cursor(page[-1].id) if more else None}


def get(svc: Services, principal: Principal, cell_id: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return _view(s, _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:read"))


def _transition(
    svc: Services,
    s: Session,
    principal: Principal,
    cell_id: str,
    *,
    kind: str,
    steps: tuple[str, ...],
    desired: str,
    stop_timeout: float | None = None,
    restart: bool = False,
) -> Outcome:
    now = utcnow()
    cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
    lock_cell_host(s, cell)  # the host's row before the cell's, as a status report takes them
    if cell.desired_state == "DELETED":
        raise Conflict(f"cell {cell.name!r} is being deleted")
    if desired == "RUNNING":
        _check_fits_again(s, cell)
    project = s.get(Project, cell.project_id)
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind=kind,
        entity_kind="cell",
        entity_id=cell.id,
        tenant_id=project.tenant_id if project else None,
        project_id=cell.project_id,
        steps=steps,
        now=now,
    )
    _supersede(s, cell, task, now)
    cell.desired_state = desired
    if stop_timeout is not None or desired != "DELETED":
        # This request's grace period only (a delete keeps the one of a stop under way).
        cell.stop_request_timeout = stop_timeout
    if restart:
        cell.restart_requested_at = now
    cell.updated_at = now
    topics = [f"task:{task.id}", f"cell:{cell.id}"]
    if cell.host_id is None:  # the controller's are the unplaced cells only
        topics.append("controller")
        if desired == "DELETED":
            tasks_mod.advance(task, "DELETE", "COMPLETED", now)
            s.delete(cell)
        elif desired == "STOPPED":
            cell.state = "STOPPED"
            tasks_mod.advance(task, "STOP", "COMPLETED", now)
    else:
        cell.host_rev = bump_host(s, cell.host_id)
        topics.append(f"host:{cell.host_id}")
        if desired == "DELETED":
            cell.state = "DELETING"
            tasks_mod.advance(task, "STOP", "STARTED", now)
        elif desired == "STOPPED" and cell.state in ("STOPPED", "EXITED"):
            tasks_mod.advance(task, "STOP", "COMPLETED", now)
        elif desired == "RUNNING":
            tasks_mod.advance(task, "SCHEDULE", "COMPLETED", now)
    s.add(CellEvent(cell_id=cell.id, at=now, type=kind.lower(), message=f"by {principal.subject}"))
    s.flush()
    return Outcome(202, tasks_mod.task_view(task), f"/v1/tasks/{task.id}", tuple(topics))


def _check_fits_again(s: Session, cell: Cell) -> None:
    """A stopped or ended cell reserves nothing on its host (`services.capacity`): running it
    again needs its size free there again, or the start is refused, saying what is short."""
    if cell.host_id is None or capacity.reserves_row(
        cell.state, cell.desired_state, cell.ended_at is not None
    ):
        return
    host = s.get(Host, cell.host_id)
    if host is None:
        return
    used = hosts_mod.usage_by_host(s).get(host.id, {})
    need = {"cpu": cell.cpu, "memory_mb": cell.memory_mb, "disk_gb": cell.disk_gb}
    total = {"cpu": host.cpu, "memory_mb": host.memory_mb, "disk_gb": host.disk_gb}
    short = capacity.shortfall(need, total, used)
    taken = {
        (p.get("protocol", "tcp"), int(p["host_port"]))
        for ports in s.scalars(
            select(Cell.ports).where(capacity.reserves(), Cell.host_id == host.id)
        )
        for p in ports or []
        if p.get("host_port")
    }
    clash = [
        f"port {p['host_port']}/{p.get('protocol', 'tcp')} is taken by another cell"
        for p in cell.ports or []
        if p.get("host_port") and (p.get("protocol", "tcp"), int(p["host_port"])) in taken
    ]
    short = "; ".join([*([short] if short else []), *clash]) or None
    if short is not None:
        raise InsufficientCapacity(
            f"cell {cell.name!r} no longer fits on its host {host.name!r} (a stopped cell "
            f"reserves nothing): {short}; free some capacity there, or delete and re-run the cell"
        )


def start(svc: Services, s: Session, principal: Principal, cell_id: str) -> Outcome:
    # A start request is also a restart request: an exited or stopped container runs again
    # whatever its restart policy, and the agent can tell from the container's start time.
    return _transition(
        svc,
        s,
        principal,
        cell_id,
        kind="START_CELL",
        steps=tasks_mod.START_STEPS,
        desired="RUNNING",
        restart=True,
    )


def stop(
    svc: Services, s: Session, principal: Principal, cell_id: str, timeout: float | None
) -> Outcome:
    return _transition(
        svc,
        s,
        principal,
        cell_id,
        kind="STOP_CELL",
        steps=tasks_mod.STOP_STEPS,
        desired="STOPPED",
        stop_timeout=timeout,
    )


def restart(
    svc: Services, s: Session, principal: Principal, cell_id: str, timeout: float | None
) -> Outcome:
    return _transition(
        svc,
        s,
        principal,
        cell_id,
        kind="RESTART_CELL",
        steps=tasks_mod.START_STEPS,
        desired="RUNNING",
        stop_timeout=timeout,
        restart=True,
    )


def _refuse_owned(s: Session, cell: Cell, owner: str | None) -> None:
    """A cluster's node cell is the cluster's to delete: removed behind its back, the cluster
    would go on reporting the node ready. Stop, start and restart stay allowed (the cluster's
    readiness probes see them). A service's cell likewise (`docs/services.md`)."""
    service = s.get(Service, (cell.labels or {}).get(SERVICE_LABEL, ""))
    if service is not None and service.id != owner:
        raise Conflict(
            f"cell {cell.name!r} belongs to service {service.name!r}, which would replace it; "
            f"scale or delete the service instead (`cellplane service scale {service.name} N`, "
            f"`cellplane service rm {service.name}`)"
        )
    cluster_id = cell.labels.get(CLUSTER_LABEL) if cell.labels else None
    if not cluster_id or cluster_id == owner:
        return
    cluster = s.get(Cluster, cluster_id)
    if cluster is None:  # its cluster is gone: an orphan, anyone may remove it
        return
    raise Conflict(
        f"cell {cell.name!r} is a node of cluster {cluster.name!r}; delete or resize the cluster "
        f"instead (`cellplane cluster rm {cluster.name}`, `cellplane cluster resize "
        f"{cluster.name} ...`)"
    )


def delete(
    svc: Services, s: Session, principal: Principal, cell_id: str, *, owner: str | None = None
) -> Outcome:
    """Delete a cell. A cluster's node cell only for that cluster (`owner`: its id, the cluster
    executor's call); anyone else is refused with the cluster command to use."""
    cell = s.get(Cell, cell_id)
    if cell is not None:
        _refuse_owned(s, cell, owner)
        audit.record_cell_delete(s, principal, cell)  # (all of it undone if refused below)
    return _transition(
        svc,
        s,
        principal,
        cell_id,
        kind="DELETE_CELL",
        steps=tasks_mod.DELETE_STEPS,
        desired="DELETED",
    )
