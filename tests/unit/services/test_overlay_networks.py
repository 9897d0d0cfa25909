"""The control plane's side of the overlay: a VNI per network, an address per cell, and what each
host is told about the other hosts of its networks (`services.networks.overlay`, the agent route).

Pure allocation first (`state.networks`), then rows through the in-process server (`plat`), with
a second host registered (nothing is sent to its address) and cells put on hosts by hand.
"""

from __future__ import annotations

import ipaddress

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import select, update

from cellplane.state import networks
from cellplane.state.models import Cell, Host, Network, Project
from cellplane.wire.exec import ALIASES_LABEL, network_names


def test_vnis_are_the_lowest_free_from_the_base() -> None:
    assert networks.free_vni([]) == networks.VNI_BASE
    assert networks.free_vni([None, networks.VNI_BASE]) == networks.VNI_BASE + 1
    assert networks.free_vni([networks.VNI_BASE + 1]) == networks.VNI_BASE


def test_addresses_skip_the_gateway_and_the_taken_and_end_when_full() -> None:
    assert networks.free_address("10.128.0.0/24", []) == "10.128.0.2"  # .1: the gateway
    assert networks.free_address("10.128.0.0/24", ["10.128.0.2", None]) == "10.128.0.3"
    full = [f"10.128.0.{i}" for i in range(2, 255)]
    with pytest.raises(ValueError, match="no free address"):
        networks.free_address("10.128.0.0/24", full)


def _new_project(plat: Platform, name: str) -> None:
    r = plat.client.post("/v1/projects", json={"name": name}, headers=plat.admin)
    assert r.status_code == 201, r.text


def _cell(plat: Platform, project: str, name: str) -> str:
    payload = {"name": name, "image": "host", "command": ["sleep", "3600"]}
    r = plat.client.post(f"/v1/projects/{project}/cells", json=payload, headers=plat.admin)
    assert r.status_code == 202, r.text
    return str(r.json()["entity"]["id"])


def _aliased(plat: Platform, project: str, name: str, aliases: str) -> str:
    payload = {
        "name": name,
        "image": "host",
        "command": ["sleep", "3600"],
        "labels": {ALIASES_LABEL: aliases},
    }
    r = plat.client.post(f"/v1/projects/{project}/cells", json=payload, headers=plat.admin)
    assert r.status_code == 202, r.text
    return str(r.json()["entity"]["id"])


def _put_on(plat: Platform, host_id: str, *cell_ids: str) -> None:
    with plat.svc.db.session() as s:
        s.execute(update(Cell).where(Cell.id.in_(cell_ids)).values(host_id=host_id))


def _overlay(plat: Platform, host_id: str, token: str) -> dict[str, object]:
    r = plat.client.get(
        f"/v1/agent/hosts/{host_id}/overlay", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    data: dict[str, object] = r.json()
    return data


def test_every_network_gets_its_own_vni_and_every_cell_its_own_address(plat: Platform) -> None:
    for p in ("red", "blue"):
        _new_project(plat, p)
    ids = [_cell(plat, "red", f"r{i}") for i in range(3)] + [_cell(plat, "blue", "b0")]
    with plat.svc.db.reader() as s:
        vnis = list(s.scalars(select(Network.vni)))
        cells = [
            (c.name, c.network_id, c.network_address)
            for c in s.scalars(select(Cell).where(Cell.id.in_(ids)))
        ]
        subnets = {n.id: ipaddress.ip_network(n.subnet) for n in s.scalars(select(Network))}
    assert None not in vnis and len(set(vnis)) == len(vnis)
    red = [address for name, _, address in cells if name.startswith("r")]
    assert len(set(red)) == 3
    for _, network_id, address in cells:
        subnet = subnets[str(network_id)]
        assert address is not None and ipaddress.ip_address(address) in subnet
        assert address != str(next(subnet.hosts()))  # not the gateway


def test_a_host_learns_the_peers_and_cells_of_its_networks_only(plat: Platform) -> None:
    other, other_token = plat.register_host("host-2")
    with plat.svc.db.session() as s:
        s.execute(update(Host).where(Host.id == other).values(address="10.0.0.2"))
        s.execute(update(Host).where(Host.id == plat.host_id).values(address="10.0.0.1"))
    for p in ("red", "blue"):
        _new_project(plat, p)
    r1, r2 = _cell(plat, "red", "r1"), _cell(plat, "red", "r2")
    b1, b2 = _cell(plat, "blue", "b1"), _cell(plat, "blue", "b2")
    _put_on(plat, plat.host_id, r1, b1)
    _put_on(plat, other, r2)
    _put_on(plat, other, b2)
    with plat.svc.db.reader() as s:
        addr = {c.id: c.network_address for c in s.scalars(select(Cell))}
        vni = {
            p.name: s.scalar(select(Network.vni).where(Network.project_id == p.id))
            for p in s.scalars(select(Project))
        }
    mine = _overlay(plat, plat.host_id, plat.host_token)
    nets = {n["vni"]: n for n in mine["networks"]}  # type: ignore[attr-defined]
    assert set(nets) == {vni["red"], vni["blue"]}
    red = nets[vni["red"]]
    assert red["peers"] == ["10.0.0.2"]
    assert red["cells"] == [{"cell_id": r2, "name": "r2", "address": addr[r2], "aliases": []}]
    assert [c["name"] for c in nets[vni["blue"]]["cells"]] == ["b2"]  # never a red cell
    theirs = _overlay(plat, other, other_token)
    red2 = {n["vni"]: n for n in theirs["networks"]}[vni["red"]]  # type: ignore[attr-defined]
    assert red2["peers"] == ["10.0.0.1"] and [c["name"] for c in red2["cells"]] == ["r1"]
    # The assignment carries the cell's address and the network's VNI.
    cell = next(c for c in plat.assignments()["cells"] if c["cell_id"] == r1)
    assert cell["network"]["vni"] == vni["red"] and cell["network"]["address"] == addr[r1]
    # A host without cells has no overlay network; a host may read only its own.
    with plat.svc.db.session() as s:
        s.execute(update(Cell).where(Cell.host_id == other).values(host_id=None))
    assert _overlay(plat, other, other_token)["networks"] == []
    r = plat.client.get(f"/v1/agent/hosts/{other}/overlay", headers=plat.agent)
    assert r.status_code in (401, 403), r.text


def test_a_peer_cell_carries_its_aliases_to_the_other_hosts(plat: Platform) -> None:
    """A Docker container's further names (its short id and its `--network-alias` values,
    Compose's service name) reach the other hosts of its network with its name, so they
    resolve there as on its own host; a cell without aliases has none."""
    other, other_token = plat.register_host("host-2")
    with plat.svc.db.session() as s:
        s.execute(update(Host).where(Host.id == other).values(address="10.0.0.2"))
    _new_project(plat, "red")
    here = _cell(plat, "red", "client")
    web1 = _aliased(plat, "red", "proj-web-1", "web,frontend")
    web2 = _aliased(plat, "red", "proj-web-2", "web")
    plain = _cell(plat, "red", "plain")
    _put_on(plat, plat.host_id, here)
    _put_on(plat, other, web1, web2, plain)
    (red,) = _overlay(plat, plat.host_id, plat.host_token)["networks"]  # type: ignore[misc]
    got = {c["name"]: c["aliases"] for c in red["cells"]}
    assert got == {
        "plain": [],
        "proj-web-1": network_names(web1, "proj-web-1", {ALIASES_LABEL: "web,frontend"})[1:],
        "proj-web-2": network_names(web2, "proj-web-2", {ALIASES_LABEL: "web"})[1:],
    }
    assert got["proj-web-1"][1:] == ["web", "frontend"]  # after the short id
    assert len(got["proj-web-1"][0]) == 12
    # The other host sees the client, which has no aliases.
    (red2,) = _overlay(plat, other, other_token)["networks"]  # type: ignore[misc]
    assert [(c["name"], c["aliases"]) for c in red2["cells"]] == [("client", [])]
