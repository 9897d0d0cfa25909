"""A project's networks as a resource: create, list, delete (`/v1/projects/{p}/networks`).

Every project has its default network (`state.networks` makes it with the project); these are
the others. A new network gets a subnet sized like the default one (the project's cell quota)
and a VXLAN id; a cell joins one by name (`CellCreate.network`, `networks.network_for`). Cells
of different networks do not reach each other, as cells of different projects do not: each
network has its own bridge and VNI on every host (docs/networks.md). Rights: those of cells
(`cells:read`, `cells:write`), since networks are what cells join.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, NotFound
from cellplane.ids import new_id, utcnow
from cellplane.services import audit, cell_networks
from cellplane.services.cells import project_for
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome
from cellplane.services.networks import network_view
from cellplane.services.schemas import NetworkCreate
from cellplane.state import networks as state_networks
from cellplane.state.models import Network, Project

__all__ = ["create", "delete", "get", "list_networks"]


def _view(s: Session, net: Network, project: Project) -> dict[str, Any]:
    return network_view(net, project=project.name, cells=cell_networks.count(s, net.id))


def create(
    s: Session,
    principal: Principal,
    project: str,
    body: NetworkCreate,
    *,
    docker_name: str | None = None,
) -> Outcome:
    """A new network of the project; `docker_name`: the name a Docker client asked for, when
    it is not `body.name` (kept and shown by the Docker endpoint)."""
    p = project_for(s, principal, project, "cells:write")
    if s.scalar(select(Network.id).where(Network.project_id == p.id, Network.name == body.name)):
        raise Conflict(f"a network named {body.name!r} already exists in project {p.name!r}")
    prefix = state_networks.prefix_for_cells(state_networks.cell_limit(s, p.id, p.tenant_id))
    try:
        subnet = state_networks.lowest_free_subnet(s.scalars(select(Network.subnet)), prefix)
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    net = Network(
        id=new_id("net"),
        project_id=p.id,
        name=body.name,
        subnet=subnet,
        driver=state_networks.DEFAULT_DRIVER,
        created_at=utcnow(),
        labels=dict(body.labels),
        docker_name=docker_name if docker_name != body.name else None,
    )
    s.add(net)
    s.flush()  # the VXLAN id is given at flush (state.networks)
    return Outcome(201, _view(s, net, p), f"/v1/projects/{p.name}/networks/{body.name}")


def list_networks(svc: Services, principal: Principal, project: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        p = project_for(s, principal, project, "cells:read")
        nets = s.scalars(
            select(Network).where(Network.project_id == p.id).order_by(Network.created_at)
        )
        items = [_view(s, n, p) for n in nets]
        items.sort(key=lambda v: (not v["default"], v["name"]))
        return {"items": items, "next_cursor": None}


def _named(s: Session, p: Project, name: str) -> Network:
    if name == state_networks.DEFAULT_NETWORK:
        found = s.get(Network, state_networks.default_network_id(p.id))
    else:
        found = s.scalar(select(Network).where(Network.project_id == p.id, Network.name == name))
        if found is not None and state_networks.is_default(found):
            found = None  # the default network is called "default" only
    if found is None:
        raise NotFound(f"network {name!r} does not exist in project {p.name!r}")
    return found


def get(svc: Services, principal: Principal, project: str, name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        p = project_for(s, principal, project, "cells:read")
        return _view(s, _named(s, p, name), p)


def delete(svc: Services, principal: Principal, project: str, name: str) -> None:
    with svc.db.session() as s:
        p = project_for(s, principal, project, "cells:write")
        net = _named(s, p, name)
        if state_networks.is_default(net):
            raise Conflict("the default network goes only with its project")
        users = cell_networks.users(s, net.id, limit=6)
        if users:
            names = ", ".join(repr(n) for n in users[:5]) + (", ..." if len(users) > 5 else "")
            raise Conflict(
                f"network {name!r} is used by cell(s) {names}; remove them first "
                "(`cellplane cell rm NAME`)"
            )
        audit.record(
            s,
            tenant_id=p.tenant_id,
            actor=audit.actor_of(principal),
            action="network.delete",
            target=f"network:{net.id}",
            detail=audit.deleted_detail(p.id, net.name, net.docker_name, net.created_at),
        )
        s.delete(net)
