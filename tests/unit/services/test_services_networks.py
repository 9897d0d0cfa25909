"""Project network subnets sized for the project's cell quota, from the pool, without collisions.

Pure sizing and allocation first (`state.networks`), then the rows through the in-process server
(`plat`): a new project's default network, a quota change that moves an unused network to a
larger subnet, and a network in use that keeps its subnet.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.state import networks
from cellplane.state.identity_models import AuditEvent
from cellplane.state.models import Network, Project

# --- sizing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cells", "prefix"),
    [
        (None, 20),  # no quota: 4,093 cells
        (0, 24),
        (1, 24),
        (253, 24),  # what a /24 holds: network, broadcast and gateway are taken
        (254, 23),
        (300, 23),
        (509, 23),
        (510, 22),
        (1000, 22),
        (4093, 20),
        (4094, 19),
        (65533, 16),
        (10**6, 16),  # no larger than a /16: beyond it, IPAM says so on the cell
    ],
)
def test_prefix_holds_the_cell_quota(cells: int | None, prefix: int) -> None:
    assert networks.prefix_for_cells(cells) == prefix
    if cells is not None and cells <= networks.capacity(16):
        assert networks.capacity(prefix) >= cells


# --- allocation ---------------------------------------------------------------------------------


def test_blocks_are_aligned_and_skip_any_overlap() -> None:
    assert networks.free_subnet([], 20) == "10.128.0.0/20"
    # A /24 at the start pushes a /20 to the next aligned /20.
    assert networks.free_subnet(["10.128.0.0/24"], 20) == "10.128.16.0/20"
    # A /24 inside the second /20: the first one is still free.
    assert networks.free_subnet(["10.128.17.0/24"], 20) == "10.128.0.0/20"
    # /24s fill the gaps a /20 leaves, never inside it.
    assert networks.free_subnet(["10.128.0.0/20"], 24) == "10.128.16.0/24"
    assert networks.free_subnet(["10.128.0.0/24", "10.128.16.0/20"], 24) == "10.128.1.0/24"
    # Unsorted input, overlapping entries, and subnets outside the pool.
    taken = ["10.128.32.0/20", "192.168.0.0/16", "10.128.0.0/20", "10.128.16.0/21"]
    assert networks.free_subnet(taken, 20) == "10.128.48.0/20"


def test_a_full_pool_falls_back_to_smaller_blocks_then_refuses() -> None:
    # Every /20 but one taken by a /21 and a /24: no /20 is left, a /21 is.
    all_20 = [f"{ipaddress.ip_address(0x0A800000 + k * 4096)}/20" for k in range(2048)]
    last = all_20.pop()
    half = str(next(ipaddress.ip_network(last).subnets(new_prefix=21)))
    taken = [*all_20, half]
    assert networks.free_subnet(taken, 20) is None
    got = networks.lowest_free_subnet(taken, 20)
    assert got == "10.255.248.0/21"
    with pytest.raises(ValueError, match="exhausted"):
        networks.lowest_free_subnet([*all_20, last], 20)


def test_no_allocation_overlaps_another() -> None:
    taken: list[str] = []
    for prefix in (24, 20, 24, 22, 23, 20, 24, 16, 24):
        taken.append(networks.lowest_free_subnet(taken, prefix))
    nets = [ipaddress.ip_network(t) for t in taken]
    for i, a in enumerate(nets):
        assert a.subnet_of(networks.SUBNET_POOL)
        for b in nets[i + 1 :]:
            assert not a.overlaps(b), (a, b)


# --- the rows -----------------------------------------------------------------------------------


def net_of(plat: Platform, project: str) -> Network:
    with plat.svc.db.reader() as s:
        p = s.scalar(select(Project).where(Project.name == project))
        assert p is not None
        n = s.scalar(select(Network).where(Network.project_id == p.id))
        assert n is not None
        s.expunge(n)
        return n


def put(plat: Platform, path: str, body: dict[str, Any]) -> None:
    r = plat.client.put(path, json=body, headers=plat.admin)
    assert r.status_code == 200, r.text


def new_project(plat: Platform, name: str) -> None:
    r = plat.client.post("/v1/projects", json={"name": name}, headers=plat.admin)
    assert r.status_code == 201, r.text


def test_a_project_without_a_quota_gets_a_network_for_thousands(plat: Platform) -> None:
    new_project(plat, "big")
    subnet = ipaddress.ip_network(net_of(plat, "big").subnet)
    assert subnet.prefixlen == 20 and subnet.subnet_of(networks.SUBNET_POOL)
    assert not subnet.overlaps(ipaddress.ip_network(net_of(plat, "default").subnet))


def test_a_new_project_is_sized_by_its_tenants_cell_quota(plat: Platform) -> None:
    put(plat, "/v1/tenants/default/quota", {"cells": 100})
    new_project(plat, "small")
    assert ipaddress.ip_network(net_of(plat, "small").subnet).prefixlen == 24


def test_a_raised_quota_moves_an_unused_network_to_a_larger_subnet(plat: Platform) -> None:
    put(plat, "/v1/tenants/default/quota", {"cells": 100})
    new_project(plat, "grow")
    before = net_of(plat, "grow")
    put(plat, "/v1/projects/grow/quota", {"cells": 50})
    put(plat, "/v1/tenants/default/quota", {"cells": 5000})
    # The tenant's quota grew, the project's own (50) still bounds it: nothing moves.
    assert net_of(plat, "grow").subnet == before.subnet
    put(plat, "/v1/projects/grow/quota", {"cells": 300})
    moved = net_of(plat, "grow")
    assert (moved.id, moved.name) == (before.id, before.name)
    assert ipaddress.ip_network(moved.subnet).prefixlen == 23  # holds the project's 300
    with plat.svc.db.reader() as s:
        details = [a.detail or {} for a in s.scalars(select(AuditEvent))]
    resized = [
        d["networks_resized"] for d in details if moved.name in d.get("networks_resized", {})
    ]
    assert resized == [{moved.name: moved.subnet}]  # audited with the quota change that moved it


def test_a_lowered_quota_gives_the_pool_back_while_unused(plat: Platform) -> None:
    new_project(plat, "shrink")
    assert ipaddress.ip_network(net_of(plat, "shrink").subnet).prefixlen == 20
    put(plat, "/v1/projects/shrink/quota", {"cells": 10})
    assert ipaddress.ip_network(net_of(plat, "shrink").subnet).prefixlen == 24


def test_a_network_in_use_keeps_its_subnet(plat: Platform) -> None:
    put(plat, "/v1/tenants/default/quota", {"cells": 100})
    new_project(plat, "busy")
    before = net_of(plat, "busy").subnet
    r = plat.client.post(
        "/v1/projects/busy/cells",
        json={
            "name": "c1",
            "image": "host",
            "command": ["sleep", "1"],
            "cpu": 0.1,
            "memory_mb": 32,
        },
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    put(plat, "/v1/tenants/default/quota", {"cells": None})
    assert net_of(plat, "busy").subnet == before  # its cell has an address in it
