"""Cluster placement through the API: policies that cannot hold on one host are reported; with
several hosts they are honoured, or the cluster is refused naming the policy."""

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


def test_with_several_hosts_instance_per_host_is_honoured_or_the_cluster_refused(
    plat: Platform,
) -> None:
    plat.register_host("host-2")
    body = {
        "name": "iph",
        "spec": {"nodeGroups": [group("w", 3, placementPolicies={"instancePerHost": 1})]},
    }
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 409, r.text
    assert "instancePerHost 1 for group iph/w: 2 hosts hold members" in r.text
    body["spec"]["nodeGroups"] = [group("w", 2, placementPolicies={"instancePerHost": 1})]
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 202, r.text
    with plat.svc.db.reader() as s:
        c = s.scalar(select(Cluster).where(Cluster.name == "iph"))
        assert c is not None
        assert len(set(c.placement["hosts"].values())) == 2
        assert c.placement.get("notes", []) == []


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


def test_a_mixed_case_group_name_is_mapped_to_a_cell_name(plat: Platform) -> None:
    # Serengeti's naming rule allows mixed case; cells are named with the mapped DNS label.
    body = {"name": "upper", "spec": {"nodeGroups": [group("dataWorkers", 1)]}}
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 202, r.text
    assert [s["name"] for s in r.json()["steps"]] == ["upper-data-workers-0:basic"]
    view = plat.client.get("/v1/projects/default/clusters?name=upper", headers=plat.admin).json()
    groups = view["items"][0]["nodeGroups"]
    assert groups[0]["name"] == "dataWorkers" and groups[0]["cellName"] == "data-workers"


def test_absurd_instance_num_is_refused_before_planning(plat: Platform) -> None:
    body = {"name": "huge", "spec": {"nodeGroups": [group("w", 10**9)]}}
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 422, r.text
    assert "spec.nodeGroups[0].instanceNum" in r.text and "10000" in r.text


def test_quota_is_checked_on_group_sizes_before_nodes_are_built(
    plat: Platform, monkeypatch: Any
) -> None:
    from cellplane.clusters import planner
    from cellplane.services import clusters as clusters_mod

    r = plat.client.put("/v1/projects/default/quota", json={"cells": 5}, headers=plat.admin)
    assert r.status_code == 200, r.text

    def no_planning(*args: Any, **kw: Any) -> Any:
        raise AssertionError("planned before the quota was checked")

    monkeypatch.setattr(clusters_mod, "plan_cluster", no_planning)
    monkeypatch.setattr(planner, "plan_cluster", no_planning)
    body = {"name": "many", "spec": {"nodeGroups": [group("w", 9000)]}}
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    assert r.status_code == 409, r.text
    assert "cells quota is 5" in r.json()["detail"]


def test_template_form_and_unused_keys_through_the_api(plat: Platform) -> None:
    spec = {
        "groups": [
            {
                "name": "dataMaster",
                "roles": ["basic"],
                "instance_num": "[2,1,3]",
                "cpu": 1,
                "memory": 256,
                "storage": {"size": 1},
                "vm_folder_path": "SERENGETI-vApp/x",
            }
        ]
    }
    r = plat.client.post(
        "/v1/projects/default/clusters", json={"name": "tpl", "spec": spec}, headers=plat.admin
    )
    assert r.status_code == 202, r.text
    view = plat.client.get("/v1/projects/default/clusters?name=tpl", headers=plat.admin).json()
    c = view["items"][0]
    assert c["nodeGroups"] == [
        {"name": "dataMaster", "cellName": "data-master", "roles": ["basic"], "instanceNum": 2}
    ]
    assert any("vmFolderPath" in n and "not applied" in n for n in c["placement_notes"])
    exported = plat.client.get(f"/v1/clusters/{c['id']}/export", headers=plat.admin).json()
    assert exported["nodeGroups"][0] == {
        "name": "dataMaster",
        "roles": ["basic"],
        "instanceNum": "[2,1,3]",
        "cpuNum": 1,
        "memCapacityMB": 256,
        "storage": {"sizeGB": 1},
        "vmFolderPath": "SERENGETI-vApp/x",
        "cellName": "data-master",
    }
