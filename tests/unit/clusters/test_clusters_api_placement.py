"""Cluster placement through the API: policies that cannot hold on one host are reported."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.state.cluster_models import Cluster


def group(name: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "roles": ["basic"],
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": 256,
        "storage": {"sizeGB": 1},
        **extra,
    }


def test_instance_per_host_on_one_host_is_placed_and_reported(plat: Platform) -> None:
    body = {
        "name": "iph",
        "spec": {"nodeGroups": [group("w", 3, placementPolicies={"instancePerHost": 1})]},
    }
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 202, r.text
    view = plat.client.get(f"/v1/clusters/{r.json()['entity']['id']}", headers=plat.admin).json()
    (note,) = view["placement_notes"]
    assert "node group w: instancePerHost 1 cannot be honoured with 1 ready host(s)" in note
    with plat.svc.db.reader() as s:
        c = s.scalar(select(Cluster).where(Cluster.name == "iph"))
        assert c is not None
        assert c.placement["hosts"] == {f"iph-w-{i}": plat.host_id for i in range(3)}


def test_without_policies_there_is_nothing_to_report(plat: Platform) -> None:
    body = {"name": "plain", "spec": {"nodeGroups": [group("w", 2)]}}
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 202, r.text
    view = plat.client.get(f"/v1/clusters/{r.json()['entity']['id']}", headers=plat.admin).json()
    assert view["placement_notes"] == []


def test_a_node_too_big_for_any_host_is_still_refused(plat: Platform) -> None:
    body = {
        "name": "huge",
        "spec": {
            "nodeGroups": [
                group("w", 1, memCapacityMB=10**7, placementPolicies={"instancePerHost": 1})
            ]
        },
    }
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 409 and r.json()["type"].endswith("/insufficient-capacity")
    assert "huge-w-0" in r.json()["detail"]


def test_a_group_name_that_cannot_name_cells_is_refused_up_front(plat: Platform) -> None:
    body = {"name": "upper", "spec": {"nodeGroups": [group("Workers", 1)]}}
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 422, r.text
    assert "nodeGroups[0].name 'Workers'" in r.text and "lowercase" in r.text
