"""Many cells of one template in one transaction: admission and placement of a whole batch.

A service's reconcile pass (`service_reconcile.run_pass`) creates its missing cells here rather
than one `cells.create` at a time. For N cells of one template, in the caller's transaction:

- the template is checked once: image, size, isolation class, network;
- the names are checked once (one query for all of them);
- the quota is checked once, for the N cells together;
- the N cells are placed together by the pure scheduler (`scheduler.place`) on one snapshot of
  the hosts, and written SCHEDULED with their hosts (one revision bump per host touched); cells
  the scheduler could not place are written PENDING with its reason, for the controller's
  placement loop to retry as it does for any cell; if not one cell fits, the batch is refused
  whole (409, the scheduler's reason) and nothing is written;
- the cells and their events go in with one multi-row INSERT each (SQLAlchemy's executemany);
  their overlay addresses are allocated in one pass over the network's taken addresses.

A service's cells have no task of their own: the service's task reports their progress.

Placement here and in the controller's loop (`controller.scheduling`) take the same lock on
PostgreSQL (`lock_placement`), so two placements never read the same free capacity; SQLite
serialises every writer anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.errors import Conflict, InsufficientCapacity, ValidationFailed
from cellplane.ids import new_id
from cellplane.services import cells as cells_mod
from cellplane.services import hosts as hosts_mod
from cellplane.services import isolation
from cellplane.services import networks as networks_mod
from cellplane.services import quotas as quotas_mod
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import CellCreate
from cellplane.state import networks as state_networks
from cellplane.state.conflicts import lock_hosts
from cellplane.state.models import Cell, CellEvent, CellNetwork, Host, Image, Network, Project

__all__ = ["PLACEMENT_LOCK", "Batch", "create_many", "lock_placement"]

PLACEMENT_LOCK = 0x4350504C  # "CPPL": placements on PostgreSQL, one transaction at a time


def lock_placement(s: Session) -> None:
    """Until the transaction ends, no other transaction places cells (PostgreSQL; a no-op on
    SQLite, whose writers are serialised)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLACEMENT_LOCK})


@dataclasses.dataclass(frozen=True)
class Batch:
    cell_ids: list[str]
    placed: int
    topics: tuple[str, ...]


def _request(
    body: CellCreate, iso: str, size: tuple[float, int, int]
) -> scheduler.PlacementRequest:
    """The placement request every cell of the batch shares (only the id differs)."""
    return scheduler.PlacementRequest(
        id="",
        policy=body.placement or scheduler.SPREAD,
        cell_labels=dict(body.labels),
        affinity=tuple(
            scheduler.Affinity(dict(a.selector), bool(a.anti), bool(a.soft)) for a in body.affinity
        ),
        resources=scheduler.Resources(*size),
        ports=frozenset((p.protocol, int(p.host_port)) for p in body.ports if p.host_port),
        isolation=iso,
    )


def _addresses(s: Session, network_id: str, n: int) -> list[str | None]:
    """`n` overlay addresses on the network (None for those beyond a full subnet: the engine's
    IPAM error lands on the cell, as `state.networks` does for a single cell)."""
    net = s.get(Network, network_id)
    if net is None:
        return [None] * n
    state_networks.lock_addresses(s, [network_id])
    taken = list(s.scalars(select(Cell.network_address).where(Cell.network_id == network_id)))
    taken += s.scalars(select(CellNetwork.address).where(CellNetwork.network_id == network_id))
    found: list[str | None] = list(state_networks.free_addresses(net.subnet, taken, n))
    return found + [None] * (n - len(found))


def create_many(
    svc: Services,
    s: Session,
    principal: Principal,
    project: Project,
    body: CellCreate,
    names: Sequence[str],
    now: datetime,
    *,
    spread_term: scheduler.Affinity | None = None,
) -> Batch:
    """Admit, place and write `len(names)` cells of `body` (each with its name from `names`) in
    the caller's transaction. `spread_term`: the body's soft anti-affinity that selects only
    cells of this project (a service's own cells): the hosts' cell detail is then read for this
    project only. A template with volumes is refused (their binding is per cell)."""
    if body.volumes:
        raise ValidationFailed.field("volumes", "cells created in a batch cannot mount volumes")
    n = len(names)
    image = s.scalar(select(Image).where((Image.name == body.image) | (Image.id == body.image)))
    if image is None:
        raise ValidationFailed.field("image", f"image {body.image!r} does not exist")
    cpu, mem, disk, flavor_name = cells_mod.resolve_size(s, body)
    clash = s.scalar(
        select(Cell.name).where(Cell.project_id == project.id, Cell.name.in_(list(names)))
    )
    if clash is not None:
        raise Conflict(f"a cell named {clash!r} already exists in project {project.name!r}")
    iso = isolation.admit(s, project, body.isolation)
    quotas_mod.admit(
        s,
        tenant_id=project.tenant_id,
        project_id=project.id,
        cpu=cpu * n,
        memory_mb=mem * n,
        disk_gb=disk * n,
        cells=n,
    )
    if body.networks and len(body.networks) > 1:
        raise ValidationFailed.field("networks", "cells created in a batch join one network")
    first = body.networks[0] if body.networks else body.network
    network_id = networks_mod.network_for(s, project.id, first)
    network_id = network_id or state_networks.default_network_id(project.id)

    shared = _request(body, iso, (cpu, mem, disk))
    ids = [new_id("cel") for _ in names]
    placements: tuple[scheduler.Placement, ...] = ()
    unplaced: tuple[scheduler.Unplaced, ...] = ()
    if body.start:
        lock_placement(s)
        detail = shared.reads_placed_cells()
        own = detail and not shared.ports and all(a == spread_term for a in shared.affinity)
        snap = cells_mod.with_host_labels(
            hosts_mod.snapshot(
                s, svc, now, detail=detail and not own, detail_project=project.id if own else None
            )
        )
        plan = scheduler.place(
            snap, [dataclasses.replace(shared, id=cid) for cid in ids], now=now.timestamp()
        )
        if not plan.placements and plan.unplaced:
            raise InsufficientCapacity(plan.unplaced[0].reason)
        placements, unplaced = plan.placements, plan.unplaced
    host_of = {p.request_id: p.host_id for p in placements}
    why = {u.request_id: u.reason for u in unplaced}
    touched = sorted(set(host_of.values()))
    revs: dict[str, int] = {}
    if touched:
        lock_hosts(s, touched)  # in id order, as every writer of several hosts does
        s.execute(
            update(Host).where(Host.id.in_(touched)).values(revision=Host.revision + 1),
            execution_options={"synchronize_session": False},
        )
        revs = dict(s.execute(select(Host.id, Host.revision).where(Host.id.in_(touched))).all())
    addresses = _addresses(s, network_id, n)
    common: dict[str, Any] = {
        "project_id": project.id,
        "image_id": image.id,
        "flavor": flavor_name,
        "cpu": cpu,
        "memory_mb": mem,
        "disk_gb": disk,
        "command": body.command,
        "entrypoint": body.entrypoint,
        "workdir": body.workdir,
        "user": body.user,
        "hostname": body.hostname,
        "env": body.env,
        "labels": body.labels,
        "ports": [p.model_dump() for p in body.ports],
        "volumes": [],
        "restart_policy": body.restart.policy,
        "max_retries": body.restart.max_retries,
        "isolation": iso,
        "stop_timeout": body.stop_timeout,
        "healthcheck": body.healthcheck and body.healthcheck.model_dump(),
        "read_only": body.read_only,
        "pids_limit": body.pids_limit,
        "desired_state": "RUNNING" if body.start else "STOPPED",
        "restarts": 0,
        "pinned_host_id": None,
        "placement": body.placement,
        "affinity": [a.model_dump() for a in body.affinity] or None,
        "generation": 1,
        "network_id": network_id,
        "task_id": None,
        "created_at": now,
        "updated_at": now,
    }
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    who = f"by {principal.subject}"
    for cid, name, address in zip(ids, names, addresses, strict=True):
        host = host_of.get(cid)
        rows.append(
            {
                **common,
                "id": cid,
                "name": name,
                "state": "SCHEDULED" if host else "PENDING",
                "host_id": host,
                "host_rev": revs[host] if host else 0,
                "network_address": address,
                "message": why.get(cid),
            }
        )
        events.append({"cell_id": cid, "at": now, "type": "accepted", "message": who})
        if host:
            events.append({"cell_id": cid, "at": now, "type": "scheduled", "message": f"on {host}"})
    s.execute(insert(Cell), rows)
    s.execute(
        insert(CellNetwork),
        [
            {
                "cell_id": r["id"],
                "network_id": network_id,
                "address": r["network_address"],
                "position": 0,
            }
            for r in rows
        ],
    )
    s.execute(insert(CellEvent), events)
    if touched:
        svc.admission.forget()  # the hosts' usage grew
    topics = [f"host:{h}" for h in touched]
    if unplaced:
        topics.append("controller")
    return Batch(ids, len(host_of), tuple(topics))
