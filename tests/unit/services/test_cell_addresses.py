"""Cells' addresses on their network as the API creates and removes cells (the in-process
server's SQLite database): unique, inside the subnet, a hole refilled, and found without reading
every address of the network while it has no hole."""

from __future__ import annotations

import ipaddress
import random

from cellplane_platform_support import Platform
from sqlalchemy import event, select

from cellplane.state.models import Cell, CellNetwork, Network

SMALL = {"image": "host", "command": ["sleep", "60"], "cpu": 0.01, "memory_mb": 8}


def _create(plat: Platform, name: str) -> str:
    r = plat.create_cell(name, **SMALL)
    assert r.status_code == 202, r.text
    return plat.cell_id(name)


def _delete(plat: Platform, cell_id: str) -> None:
    r = plat.client.delete(f"/v1/cells/{cell_id}", headers=plat.admin)
    assert r.status_code == 202, r.text


def _addresses(plat: Platform) -> dict[str, str]:
    with plat.svc.db.reader() as s:
        rows = s.execute(select(CellNetwork.cell_id, CellNetwork.address)).all()
    return {cell_id: str(address) for cell_id, address in rows}


def _subnet(plat: Platform) -> ipaddress.IPv4Network:
    with plat.svc.db.reader() as s:
        (subnet,) = set(s.scalars(select(Network.subnet).join(Cell, Cell.network_id == Network.id)))
    net = ipaddress.ip_network(subnet)
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def test_addresses_follow_on_a_hole_is_refilled_then_they_follow_on_again(plat: Platform) -> None:
    ids = [_create(plat, f"a{i}") for i in range(5)]
    net = _subnet(plat)
    address = _addresses(plat)
    assert [address[i] for i in ids] == [str(net[k]) for k in range(2, 7)]
    _delete(plat, ids[1])  # unplaced: removed at once, its address free
    assert ids[1] not in _addresses(plat)
    refill = _create(plat, "b0")
    assert _addresses(plat)[refill] == str(net[3])
    after = _create(plat, "b1")
    assert _addresses(plat)[after] == str(net[7])


def test_a_network_without_holes_is_not_read_whole(plat: Platform) -> None:
    for i in range(12):
        _create(plat, f"c{i}")
    reads: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        reads.append(" ".join(statement.split()))

    engine = plat.svc.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        _create(plat, "c12")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    picks = [
        r
        for r in reads
        if r.startswith(("SELECT cell_networks.address FROM", "SELECT cells.network_address FROM"))
    ]
    assert picks, reads  # the addresses were looked at: the candidates only
    whole = [r for r in picks if " IN (" not in r]
    assert whole == [], whole


def test_random_creates_and_removes_never_share_an_address(plat: Platform) -> None:
    rng = random.Random(7)
    live: list[str] = []
    for step in range(80):
        if live and rng.random() < 0.4:
            _delete(plat, live.pop(rng.randrange(len(live))))
        else:
            live.append(_create(plat, f"r{step}"))
        address = _addresses(plat)
        assert set(address) == set(live)
        assert len(set(address.values())) == len(live)
    net = _subnet(plat)
    assert all(ipaddress.ip_address(a) in net for a in _addresses(plat).values())
