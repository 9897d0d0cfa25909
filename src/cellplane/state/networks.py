"""Project networks in the state: the default network of each project, and subnet allocation.

Every project has a default network, made in the same transaction as the project by a
`before_flush` hook (wherever the project is created: bootstrap, a new tenant, `POST
/v1/projects`), and every new cell without a network joins its project's default one. Migration
0008 does the same for the rows that existed before networks were a resource.

Allocation is deterministic: the lowest /24 of `SUBNET_POOL` no network holds; the unique
constraint on `networks.subnet` makes a race between two writers fail rather than collide. Ids
come from the project's id (`net-<project id>`): no clock, no randomness here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from cellplane.state.models import Cell, Network, Project

__all__ = [
    "DEFAULT_DRIVER",
    "SUBNET_POOL",
    "default_network_id",
    "default_network_name",
    "lowest_free_subnet",
    "nth_subnet",
]

# 32,768 networks of 254 addresses, away from podman's default 10.88/10.89 pools.
SUBNET_POOL: Final = ipaddress.ip_network("10.128.0.0/9")
SUBNET_PREFIX: Final = 24
DEFAULT_DRIVER: Final = "bridge"


def default_network_id(project_id: str) -> str:
    return "net-" + project_id.removeprefix("prj-")


def default_network_name(project_id: str) -> str:
    """The engine-side name of a project's default network, as it has always been."""
    return f"cp-{project_id}"


def nth_subnet(n: int) -> str:
    size = 1 << (32 - SUBNET_PREFIX)
    base = int(SUBNET_POOL.network_address) + n * size
    net = ipaddress.ip_network(f"{ipaddress.ip_address(base)}/{SUBNET_PREFIX}")
    if not net.subnet_of(SUBNET_POOL):  # type: ignore[arg-type]
        raise ValueError(f"the network pool {SUBNET_POOL} is exhausted")
    return str(net)


def lowest_free_subnet(taken: Iterable[str]) -> str:
    used = set(taken)
    n = 0
    while nth_subnet(n) in used:
        n += 1
    return nth_subnet(n)


@event.listens_for(Session, "before_flush")
def _default_networks(session: Session, _ctx: Any, _instances: Any) -> None:
    projects = [o for o in session.new if isinstance(o, Project)]
    cells = [o for o in session.new if isinstance(o, Cell) and o.network_id is None]
    if not projects and not cells:
        return
    if projects:
        with session.no_autoflush:
            taken = set(session.scalars(select(Network.subnet)))
        taken |= {o.subnet for o in session.new if isinstance(o, Network)}
        for p in projects:
            subnet = lowest_free_subnet(taken)
            taken.add(subnet)
            session.add(
                Network(
                    id=default_network_id(p.id),
                    project_id=p.id,
                    name=default_network_name(p.id),
                    subnet=subnet,
                    driver=DEFAULT_DRIVER,
                    created_at=p.created_at,
                )
            )
    for c in cells:
        c.network_id = default_network_id(c.project_id)
