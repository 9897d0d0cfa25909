"""Connecting an existing cell to one more network of its project, and disconnecting it.

`apply` does the whole change (the REST API's `POST /v1/cells/{id}/networks`, `DELETE
/v1/cells/{id}/networks/{network}`, and the Docker endpoint's `network connect` / `disconnect`).

A change of the cell (`cell_networks.connect` / `disconnect`: its rows, its address on the new
network, allocated by the control plane), committed first and made known to its host (the host's
revision is bumped: the assignment carries every network, so a container made later joins them
all); then its host's agent changes the running or stopped container at once (`agent.net_ops`,
through `agent_proxy.network_change`). When the agent refuses or cannot be reached, `undo` puts
the cell back as it was, so a refused change changes nothing. Used by the Docker endpoint's
`network connect` / `disconnect`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, NotFound
from cellplane.services import agent_proxy, cell_networks
from cellplane.services.cell_access import _agent_secret
from cellplane.services.cells import _visible, bump_host
from cellplane.services.context import Principal, Services
from cellplane.services.networks import description
from cellplane.state import networks as state_networks
from cellplane.state.conflicts import lock_cell_host
from cellplane.state.models import Cell, CellNetwork, Host, Network
from cellplane.wire.exec import network_names

__all__ = ["Change", "apply", "change", "engine_address", "network_named", "undo"]


@dataclass(frozen=True)
class Change:
    """A committed change, and what the cell's agent is to be told (None: no container yet)."""

    cell_id: str
    network_id: str
    action: str  # connect | disconnect
    address: str | None  # on the network: given (connect) or given up (disconnect)
    position: int
    target: tuple[str, str | None, str] | None
    body: dict[str, Any]


def _network(s: Session, cell: Cell, network_id: str) -> Network:
    net = s.get(Network, network_id)
    if net is None or net.project_id != cell.project_id:
        raise NotFound(f"network {network_id!r} is not one of the cell's project")
    return net


def network_named(svc: Services, principal: Principal, cell_id: str, name: str) -> str:
    """The id of the network `name` of the cell's project (404 if it has none of that name)."""
    with svc.db.reader() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:read")
        if name == state_networks.DEFAULT_NETWORK:
            return state_networks.default_network_id(cell.project_id)
        for net in s.scalars(select(Network).where(Network.project_id == cell.project_id)):
            if state_networks.display_name(net) == name and not state_networks.is_default(net):
                return net.id
        raise NotFound(f"network {name!r} does not exist in the cell's project")


async def apply(
    svc: Services,
    client: httpx.AsyncClient,
    principal: Principal,
    cell_id: str,
    network_id: str,
    action: str,
) -> Change:
    """`change`, then the cell's agent changes its container; undone if the agent refuses
    (AgentRefused) or is not reached (AgentUnreachable), both 409s."""
    done = await asyncio.to_thread(change, svc, principal, cell_id, network_id, action)
    if done.target is None:
        return done  # no container yet: it is made on every network
    try:
        answer = await agent_proxy.network_change(client, done.target, done.body)
    except (agent_proxy.AgentRefused, agent_proxy.AgentUnreachable):
        await asyncio.to_thread(undo, svc, done)
        raise
    if answer and answer.get("address"):
        await asyncio.to_thread(engine_address, svc, done, str(answer["address"]))
    return done


def change(
    svc: Services,
    principal: Principal,
    cell_id: str,
    network_id: str,
    action: str,
) -> Change:
    """Record `action` (connect or disconnect) of the cell on the network; 409 when it cannot be
    (on it already, not on it, its only network, too many, the cell deleted)."""
    with svc.db.session() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
        lock_cell_host(s, cell)  # the host's row before the cell's, as a status report
        if cell.desired_state == "DELETED":
            raise Conflict(f"cell {cell.name!r} is being deleted")
        net = _network(s, cell, network_id)
        joined = cell_networks.attachments(s, [cell.id]).get(cell.id, [])
        position = next((i for i, (n, _) in enumerate(joined) if n.id == net.id), len(joined))
        if action == "connect":
            address = cell_networks.connect(s, cell, net.id).address
        else:
            address = next((a for n, a in joined if n.id == net.id), None)
            cell_networks.disconnect(s, cell, net.id)
        host = s.get(Host, cell.host_id) if cell.host_id else None
        if host is not None:
            cell.host_rev = bump_host(s, host.id)
        target = None
        if host is not None and host.agent_url and cell.container_id:
            target = (host.agent_url, _agent_secret(svc, host), cell.id)
        body = {
            "action": action,
            "project_id": cell.project_id,
            "network": description(net, address).model_dump(),
            "aliases": network_names(cell.id, cell.name, cell.labels),
        }
        return Change(cell.id, net.id, action, address, position, target, body)


def undo(svc: Services, done: Change) -> None:
    """Put the cell back as it was before `done` (its agent refused it or was not reached)."""
    with svc.db.session() as s:
        cell = s.get(Cell, done.cell_id)
        if cell is None:
            return
        lock_cell_host(s, cell)
        try:
            if done.action == "connect":
                cell_networks.disconnect(s, cell, done.network_id)
            else:
                cell_networks.connect(s, cell, done.network_id, done.address, done.position)
        except Conflict:
            return  # changed again meanwhile: leave it
        if cell.host_id:
            cell.host_rev = bump_host(s, cell.host_id)


def engine_address(svc: Services, done: Change, address: str | None) -> None:
    """The address the engine gave the cell on the network `done` connected it to."""
    if not address or done.action != "connect":
        return
    with svc.db.session() as s:
        row = s.get(CellNetwork, (done.cell_id, done.network_id))
        if row is not None:
            row.engine_address = address[:45]
