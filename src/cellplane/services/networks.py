"""Networks of a project: what the agent is told to realise, and the read-only listing.

Called by `services.hosts` (assignments carry each cell's network description); `network_view`
is the API shape for the network routes to come. Rows are made by `state.networks` (each
project's default network) and go with their project (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.state.models import Network
from cellplane.wire import agent as wire

__all__ = ["description", "descriptions", "network_view"]


def description(net: Network) -> wire.NetworkDescription:
    return wire.NetworkDescription(name=net.name, subnet=net.subnet, driver=net.driver)


def descriptions(s: Session, ids: Iterable[str]) -> dict[str, wire.NetworkDescription]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {n.id: description(n) for n in s.scalars(select(Network).where(Network.id.in_(wanted)))}


def network_view(net: Network) -> dict[str, Any]:
    return {
        "id": net.id,
        "project_id": net.project_id,
        "name": net.name,
        "subnet": net.subnet,
        "driver": net.driver,
        "created_at": net.created_at.isoformat(),
    }
