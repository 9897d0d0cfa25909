"""A cell on several networks of its project: the request, the addresses, what its host is told.

In-process server (`plat`); the agent side is faked by reading the assignments and the overlay
view a host gets.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import select, update

from cellplane.services import cell_networks
from cellplane.state.models import Cell, CellNetwork, Host

BASE = "/v1/projects/default/networks"


def _net(plat: Platform, name: str) -> dict[str, Any]:
    r = plat.client.post(BASE, json={"name": name}, headers=plat.admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _cell(plat: Platform, name: str, **body: Any) -> str:
    r = plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    return str(r.json()["entity"]["id"])


def _get(plat: Platform, cell_id: str) -> dict[str, Any]:
    r = plat.client.get(f"/v1/cells/{cell_id}", headers=plat.admin)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_cell_joins_several_networks_with_an_address_on_each(plat: Platform) -> None:
    a, b = _net(plat, "a"), _net(plat, "b")
    both = _cell(plat, "both", networks=["a", "b"])
    only_b = _cell(plat, "onlyb", network="b")
    view = _get(plat, both)
    assert [n["name"] for n in view["networks"]] == ["a", "b"]
    for n, net in zip(view["networks"], (a, b), strict=True):
        assert ipaddress.ip_address(n["address"]) in ipaddress.ip_network(net["subnet"])
    # Each network allocates on its own: no two cells share an address on b.
    b_addresses = [view["networks"][1]["address"], _get(plat, only_b)["networks"][0]["address"]]
    assert len(set(b_addresses)) == 2
    # The first network is also the cell's `network_id`, as before.
    with plat.svc.db.reader() as s:
        cell = s.get(Cell, both)
        assert cell is not None and cell.network_id == a["id"]
        assert cell.network_address == view["networks"][0]["address"]
    # The default network is named "default", and may be one of several.
    mixed = _get(plat, _cell(plat, "mixed", networks=["b", "default"]))
    assert [n["name"] for n in mixed["networks"]] == ["b", "default"]
    assert [n["name"] for n in _get(plat, _cell(plat, "plain"))["networks"]] == ["default"]
    counts = {
        n["name"]: n["cells"] for n in plat.client.get(BASE, headers=plat.admin).json()["items"]
    }
    assert counts == {"default": 2, "a": 1, "b": 3}


def test_bad_network_lists_are_refused_and_change_nothing(plat: Platform) -> None:
    _net(plat, "a")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"network": "a", "networks": ["a"]}, "not both"),
        ({"networks": ["a", "a"]}, "named twice: a"),
        ({"networks": []}, "networks"),
        ({"networks": ["a", "nowhere"]}, "'nowhere' does not exist"),
        ({"networks": [f"n{i}" for i in range(9)]}, "networks"),
    ]
    for body, words in cases:
        r = plat.create_cell("x", **body)
        assert r.status_code == 422, (body, r.text)
        assert words in r.text, (body, r.text)
    assert plat.cell_count() == 0
    with plat.svc.db.reader() as s:
        assert list(s.scalars(select(CellNetwork))) == []


def test_the_host_is_told_every_network_and_the_overlay_lists_the_cell_on_each(
    plat: Platform,
) -> None:
    a, b = _net(plat, "a"), _net(plat, "b")
    other, other_token = plat.register_host("host-2")
    with plat.svc.db.session() as s:
        s.execute(update(Host).where(Host.id == other).values(address="10.0.0.2"))
        s.execute(update(Host).where(Host.id == plat.host_id).values(address="10.0.0.1"))
    both = _cell(plat, "both", networks=["a", "b"])
    on_a, on_b = _cell(plat, "ona", network="a"), _cell(plat, "onb", network="b")
    with plat.svc.db.session() as s:
        s.execute(update(Cell).where(Cell.id == both).values(host_id=plat.host_id))
        s.execute(update(Cell).where(Cell.id.in_([on_a, on_b])).values(host_id=other))
    view = _get(plat, both)
    cell = next(c for c in plat.assignments()["cells"] if c["cell_id"] == both)
    assert cell["network"]["name"] == a["engine_name"]
    assert cell["network"]["address"] == view["networks"][0]["address"]
    (extra,) = cell["extra_networks"]
    assert extra["name"] == b["engine_name"] and extra["vni"] == b["vni"]
    assert extra["address"] == view["networks"][1]["address"]
    # The cell's host makes both networks; the other host sees the cell on each, by address.
    r = plat.client.get(
        f"/v1/agent/hosts/{plat.host_id}/overlay",
        headers={"Authorization": f"Bearer {plat.host_token}"},
    )
    mine = {n["vni"]: n for n in r.json()["networks"]}
    assert set(mine) == {a["vni"], b["vni"]}
    assert [c["name"] for c in mine[a["vni"]]["cells"]] == ["ona"]
    assert [c["name"] for c in mine[b["vni"]]["cells"]] == ["onb"]
    r = plat.client.get(
        f"/v1/agent/hosts/{other}/overlay", headers={"Authorization": f"Bearer {other_token}"}
    )
    theirs = {n["vni"]: n for n in r.json()["networks"]}
    for net, n in ((a, 0), (b, 1)):
        peer = theirs[net["vni"]]
        assert peer["peers"] == ["10.0.0.1"]
        assert peer["cells"] == [
            {
                "cell_id": both,
                "name": "both",
                "address": view["networks"][n]["address"],
                "aliases": [],
            }
        ]


def test_a_network_is_not_deleted_while_a_cell_has_it_as_a_further_one(plat: Platform) -> None:
    _net(plat, "a")
    _net(plat, "b")
    _cell(plat, "both", networks=["a", "b"])
    r = plat.client.delete(f"{BASE}/b", headers=plat.admin)
    assert r.status_code == 409 and "'both'" in r.text


def test_connect_and_disconnect_keep_one_first_network_and_unique_addresses(
    plat: Platform,
) -> None:
    a, b = _net(plat, "a"), _net(plat, "b")
    cid = _cell(plat, "web", network="a")
    _cell(plat, "onb", network="b")
    with plat.svc.db.session() as s:
        cell = s.get(Cell, cid)
        assert cell is not None
        row = cell_networks.connect(s, cell, b["id"])
        assert row.address is not None and row.position == 1
    view = _get(plat, cid)
    assert [n["name"] for n in view["networks"]] == ["a", "b"]
    assert len({n["address"] for n in view["networks"]}) == 2
    with plat.svc.db.session() as s:
        cell = s.get(Cell, cid)
        assert cell is not None
        cell_networks.disconnect(s, cell, a["id"])  # its first: b becomes the first
    view = _get(plat, cid)
    assert [n["name"] for n in view["networks"]] == ["b"]
    with plat.svc.db.reader() as s:
        cell = s.get(Cell, cid)
        assert cell is not None and cell.network_id == b["id"]
        assert cell.network_address == view["networks"][0]["address"]


def test_the_answer_shows_the_addresses_the_engine_reports(plat: Platform) -> None:
    a, b = _net(plat, "a"), _net(plat, "b")
    cid = _cell(plat, "both", networks=["a", "b"])
    plat.schedule()
    planned = [n["address"] for n in _get(plat, cid)["networks"]]
    # A host without the overlay: its engine chose other addresses, by its network names.
    engine = {a["engine_name"]: "10.89.3.4", b["engine_name"]: "10.89.4.5", "cp-other": "x"}
    plat.report({"cell_id": cid, "state": "RUNNING", "address": "10.89.3.4", "addresses": engine})
    view = _get(plat, cid)
    assert [n["address"] for n in view["networks"]] == ["10.89.3.4", "10.89.4.5"]
    assert view["address"] == "10.89.3.4"
    # What the host is told stays the control plane's (its overlay addresses).
    cell = next(c for c in plat.assignments()["cells"] if c["cell_id"] == cid)
    assert [cell["network"]["address"], cell["extra_networks"][0]["address"]] == planned


def test_connect_and_disconnect_through_the_api(plat: Platform) -> None:
    _net(plat, "a")
    _net(plat, "b")
    cid = _cell(plat, "web", network="a")
    url = f"/v1/cells/{cid}/networks"
    r = plat.client.post(url, json={"network": "b"}, headers=plat.admin)
    assert r.status_code == 200, r.text  # no container yet: it will be made on both
    assert [n["name"] for n in r.json()["networks"]] == ["a", "b"]
    again = plat.client.post(url, json={"network": "b"}, headers=plat.admin)
    assert again.status_code == 409 and "already" in again.text
    missing = plat.client.post(url, json={"network": "nowhere"}, headers=plat.admin)
    assert missing.status_code == 404 and "nowhere" in missing.text
    bad = plat.client.post(url, json={"network": "b", "extra": 1}, headers=plat.admin)
    assert bad.status_code == 422
    r = plat.client.delete(f"{url}/a", headers=plat.admin)
    assert r.status_code == 200, r.text
    assert [n["name"] for n in r.json()["networks"]] == ["b"]
    last = plat.client.delete(f"{url}/b", headers=plat.admin)
    assert last.status_code == 409 and "only one" in last.text
    assert [n["name"] for n in _get(plat, cid)["networks"]] == ["b"]


def test_a_change_the_agent_cannot_make_is_undone(plat: Platform) -> None:
    _net(plat, "a")
    _net(plat, "b")
    cid = _cell(plat, "web", networks=["a", "b"])
    before = _get(plat, cid)["networks"]
    # The cell has a container on a host whose agent does not answer (nothing listens there).
    with plat.svc.db.session() as s:
        s.execute(
            update(Host).where(Host.id == plat.host_id).values(agent_url="http://127.0.0.1:9")
        )
        s.execute(
            update(Cell).where(Cell.id == cid).values(host_id=plat.host_id, container_id="c1")
        )
    r = plat.client.delete(f"/v1/cells/{cid}/networks/a", headers=plat.admin)
    assert r.status_code == 409 and "unreachable" in r.text
    assert _get(plat, cid)["networks"] == before  # as it was, a first again
    with plat.svc.db.reader() as s:
        cell = s.get(Cell, cid)
        assert cell is not None and cell.network_address == before[0]["address"]
    _net(plat, "c")
    r = plat.client.post(f"/v1/cells/{cid}/networks", json={"network": "c"}, headers=plat.admin)
    assert r.status_code == 409 and "unreachable" in r.text
    assert _get(plat, cid)["networks"] == before
