"""Networks of a project: what the agent is told to realise, and the read-only listing.

Called by `services.hosts` (assignments carry each cell's network description, with the cell's
address on it) and by the agent route of the overlay (`overlay`: for each network a host's cells
use, the other hosts' underlay addresses and the cells there, by name). `network_view` is the API
shape. Rows are made by `state.networks` (each project's default network, VNIs and cell
addresses) and go with their project (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import NotFound, ValidationFailed
from cellplane.services.context import Services
from cellplane.state import networks as state_networks
from cellplane.state.models import Cell, CellNetwork, Host, Network
from cellplane.wire import agent as wire
from cellplane.wire.exec import network_names

__all__ = [
    "description",
    "descriptions",
    "host_overlay",
    "network_for",
    "network_view",
    "overlay",
]

# Cells in these states have (or are about to have) no container: no peer entry, no peer host.
_GONE = ("DELETED",)


def description(net: Network, address: str | None = None) -> wire.NetworkDescription:
    return wire.NetworkDescription(
        name=state_networks.engine_name(net),
        subnet=net.subnet,
        driver=net.driver,
        vni=net.vni,
        address=address,
    )


def descriptions(s: Session, ids: Iterable[str]) -> dict[str, Network]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {n.id: n for n in s.scalars(select(Network).where(Network.id.in_(wanted)))}


def overlay(s: Session, host_id: str) -> wire.Overlay:
    """The overlay networks of `host_id`: each network one of its cells uses, with its peers.

    A peer is another host with a cell of that network that is placed and not deleted; its
    cells are listed with the control plane's addresses (whether they run yet or not: a name
    that resolves to an address that answers a little later beats one that does not resolve).
    """
    local = set(
        s.scalars(
            select(CellNetwork.network_id)
            .join(Cell, Cell.id == CellNetwork.cell_id)
            .where(Cell.host_id == host_id, Cell.desired_state.not_in(_GONE))
        )
    )
    if not local:
        return wire.Overlay(networks=[])
    nets = descriptions(s, [n for n in local if n])
    # Every cell of those networks elsewhere, on each of its networks (a cell on several is a
    # peer of each).
    rows = s.execute(
        select(
            CellNetwork.network_id,
            Cell.id,
            Cell.name,
            Cell.labels,
            CellNetwork.address,
            Host.address,
        )
        .join(Cell, Cell.id == CellNetwork.cell_id)
        .join(Host, Host.id == Cell.host_id)
        .where(
            CellNetwork.network_id.in_(sorted(nets)),
            Cell.host_id != host_id,
            Cell.desired_state.not_in(_GONE),
        )
        .order_by(CellNetwork.network_id, Cell.name)
    )
    peers: dict[str, set[str]] = {n: set() for n in nets}
    cells: dict[str, list[wire.PeerCell]] = {n: [] for n in nets}
    for network_id, cell_id, name, labels, address, host_address in rows:
        peers[str(network_id)].add(host_address)
        if address:
            further = network_names(cell_id, name, labels)[1:]
            cells[str(network_id)].append(
                wire.PeerCell(cell_id=cell_id, name=name, address=address, aliases=further)
            )
    return wire.Overlay(
        networks=[
            wire.OverlayNetwork(
                name=state_networks.engine_name(net),
                vni=net.vni,
                subnet=net.subnet,
                peers=sorted(peers[nid]),
                cells=cells[nid],
            )
            for nid, net in sorted(nets.items())
            if net.vni is not None
        ]
    )


def host_overlay(svc: Services, host_id: str) -> wire.Overlay:
    """`overlay` of an existing host (NotFound otherwise), in its own read transaction."""
    with svc.db.reader() as s:
        if s.get(Host, host_id) is None:
            raise NotFound(f"host {host_id!r} does not exist")
        return overlay(s, host_id)


def network_for(s: Session, project_id: str, name: str | None) -> str | None:
    """The id of the project's network `name` for a new cell (None: the default network)."""
    if name is None or name == state_networks.DEFAULT_NETWORK:
        return None
    found = s.scalar(
        select(Network.id).where(Network.project_id == project_id, Network.name == name)
    )
    if found is None or found == state_networks.default_network_id(project_id):
        raise ValidationFailed.field(
            "network", f"network {name!r} does not exist (`cellplane network ls`)"
        )
    return str(found)


def network_view(net: Network, *, project: str = "", cells: int = 0) -> dict[str, Any]:
    return {
        "id": net.id,
        "project_id": net.project_id,
        "project": project,
        "name": state_networks.display_name(net),
        "engine_name": state_networks.engine_name(net),
        "default": state_networks.is_default(net),
        "subnet": net.subnet,
        "driver": net.driver,
        "vni": net.vni,
        "cells": cells,
        "created_at": net.created_at.isoformat(),
        "labels": dict(net.labels or {}),
        "docker_name": net.docker_name,
    }
