"""A project's networks through the API: create, list, get, delete, and cells joining one.

In-process server (`plat`); the agent side is faked by reading the assignments a host gets.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cellplane_platform_support import Platform

BASE = "/v1/projects/default/networks"


def _create(plat: Platform, name: str, project: str = "default") -> Any:
    return plat.client.post(
        f"/v1/projects/{project}/networks", json={"name": name}, headers=plat.admin
    )


def _list(plat: Platform, project: str = "default") -> list[dict[str, Any]]:
    r = plat.client.get(f"/v1/projects/{project}/networks", headers=plat.admin)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_a_project_lists_its_default_network_and_the_ones_it_makes(plat: Platform) -> None:
    (default,) = _list(plat)
    assert default["name"] == "default" and default["default"] is True
    assert default["engine_name"].startswith("cp-prj-") and default["cells"] == 0
    r = _create(plat, "back")
    assert r.status_code == 201, r.text
    back = r.json()
    assert r.headers["location"] == f"{BASE}/back"
    assert back["name"] == "back" and back["default"] is False and back["project"] == "default"
    assert back["engine_name"] == f"cp-{back['id']}"
    assert back["vni"] not in (None, default["vni"])
    assert not ipaddress.ip_network(back["subnet"]).overlaps(
        ipaddress.ip_network(default["subnet"])
    )
    assert [n["name"] for n in _list(plat)] == ["default", "back"]
    got = plat.client.get(f"{BASE}/back", headers=plat.admin)
    assert got.status_code == 200 and got.json() == back


def test_bad_or_taken_names_are_refused_and_change_nothing(plat: Platform) -> None:
    assert _create(plat, "back").status_code == 201
    taken = _create(plat, "back")
    assert taken.status_code == 409 and "already exists" in taken.text
    for bad in ("default", "Not_A_Label", "", "x" * 64):
        r = _create(plat, bad)
        assert r.status_code == 422, (bad, r.text)
    unknown = _create(plat, "ok", project="nope")
    assert unknown.status_code == 404
    assert [n["name"] for n in _list(plat)] == ["default", "back"]


def test_a_cell_joins_a_network_by_name_and_gets_an_address_in_it(plat: Platform) -> None:
    back = _create(plat, "back").json()
    r = plat.create_cell("api", network="back")
    assert r.status_code == 202, r.text
    on_default = plat.create_cell("web")
    assert on_default.status_code == 202
    plat.schedule()
    cells = {c["name"]: c for c in plat.assignments(0)["cells"]}
    net = cells["api"]["network"]
    assert net["name"] == back["engine_name"] and net["vni"] == back["vni"]
    assert ipaddress.ip_address(net["address"]) in ipaddress.ip_network(back["subnet"])
    assert cells["web"]["network"]["vni"] != back["vni"]
    assert {n["name"]: n["cells"] for n in _list(plat)} == {"default": 1, "back": 1}


def test_a_cell_on_an_unknown_network_is_refused(plat: Platform) -> None:
    r = plat.create_cell("api", network="nowhere")
    assert r.status_code == 422 and "nowhere" in r.text
    assert plat.cell_count() == 0


def test_delete_is_refused_while_cells_use_it_and_for_the_default(plat: Platform) -> None:
    _create(plat, "back")
    assert plat.create_cell("api", network="back").status_code == 202
    used = plat.client.delete(f"{BASE}/back", headers=plat.admin)
    assert used.status_code == 409 and "'api'" in used.text
    own = plat.client.delete(f"{BASE}/default", headers=plat.admin)
    assert own.status_code == 409 and "default" in own.text
    assert [n["name"] for n in _list(plat)] == ["default", "back"]
    assert _create(plat, "spare").status_code == 201
    gone = plat.client.delete(f"{BASE}/spare", headers=plat.admin)
    assert gone.status_code == 204
    assert plat.client.get(f"{BASE}/spare", headers=plat.admin).status_code == 404
    assert plat.client.delete(f"{BASE}/spare", headers=plat.admin).status_code == 404


def test_networks_and_volumes_keep_the_labels_they_are_made_with(plat: Platform) -> None:
    labels = {"team": "blue", "com.docker.compose.project": "shop", "empty": ""}
    r = plat.client.post(BASE, json={"name": "back", "labels": labels}, headers=plat.admin)
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == labels and r.json()["docker_name"] is None
    assert plat.client.get(f"{BASE}/back", headers=plat.admin).json()["labels"] == labels
    assert [n["labels"] for n in _list(plat)] == [{}, labels]
    vols = "/v1/projects/default/volumes"
    r = plat.client.post(vols, json={"name": "data", "labels": labels}, headers=plat.admin)
    assert r.status_code == 201, r.text
    assert r.json()["labels"] == labels
    got = plat.client.get(f"/v1/volumes/{r.json()['id']}", headers=plat.admin).json()
    assert got["labels"] == labels
    # Bad labels are refused, naming the label, and nothing is made.
    for body, words in (
        ({"name": "n2", "labels": {"k": "v" * 254}}, "label 'k'"),
        ({"name": "n2", "labels": {"": "v"}}, "label ''"),
        ({"name": "n2", "labels": {"k": 1}}, "labels.k"),
        ({"name": "n2", "labels": {str(i): "" for i in range(65)}}, "labels"),
    ):
        for url in (BASE, vols):
            r = plat.client.post(url, json=body, headers=plat.admin)
            assert r.status_code == 422 and words in r.text, (url, body, r.text)
    assert [n["name"] for n in _list(plat)] == ["default", "back"]
    listed = plat.client.get(vols, headers=plat.admin).json()["items"]
    assert [v["name"] for v in listed] == ["data"]
