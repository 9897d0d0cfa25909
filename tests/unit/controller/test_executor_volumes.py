"""Cluster nodes keep their data on volumes: the executor against the in-process server (the
`ex` fixture and its fake agent: executor_support.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cellplane_executor_support import cells, create, deploy, eventually, group, run, volumes
from cellplane_platform_support import Platform
from pydantic import ValidationError
from sqlalchemy import func, select

from cellplane.clusters import Catalog
from cellplane.clusters.planner import (
    NodePlan,
    NodeVolume,
    data_volume_name,
    node_volume,
    plan_cluster,
)
from cellplane.clusters.roles import RoleDefinition
from cellplane.clusters.spec import parse_spec
from cellplane.controller.clusters import ClusterExecutor
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell, Volume

ZK_DIR = "/var/lib/cellplane/zookeeper"


# --- pure pieces ---


def test_data_volume_name_is_a_dns_label_derived_from_the_node() -> None:
    assert data_volume_name("zk-zk-0") == "zk-zk-0-data"
    node = "c" * 30 + "-" + "g" * 26 + "-1"  # 59 characters: "-data" would make 64
    name = data_volume_name(node)
    assert len(name) == 63 and name.endswith("-data") and name.startswith("c" * 30)
    assert name == data_volume_name(node)  # stable
    assert name != data_volume_name(node[:-1] + "2")  # the hash keeps cut names apart
    assert data_volume_name("a" * 58) == "a" * 58 + "-data"


def test_role_data_dir_must_be_a_normalised_absolute_path() -> None:
    assert RoleDefinition(name="r", data_dir="/var/lib/r").data_dir == "/var/lib/r"
    assert RoleDefinition(name="r").data_dir is None
    for bad in ("var/lib/r", "/", "/var/lib/r/", "/var/../r", "//r", "/var/lib r", "/a:b"):
        with pytest.raises(ValidationError, match="data_dir"):
            RoleDefinition(name="r", data_dir=bad)


def test_shipped_roles_declare_their_data_dirs(catalog: Catalog) -> None:
    dirs = {name: r.data_dir for name, r in catalog.roles.items() if r.data_dir}
    assert dirs == {
        "zookeeper": ZK_DIR,
        "etcd": "/var/lib/cellplane/etcd",
        "redis_primary": "/var/lib/redis",
        "redis_replica": "/var/lib/redis",
        "patroni": "/var/lib/cellplane/postgresql",
        "spark_worker": "/var/lib/cellplane/spark",
        "rabbitmq": "/var/lib/cellplane/rabbitmq",
        "galera": "/var/lib/cellplane/galera",
    }
    zoo_cfg = catalog.roles["zookeeper"].config_files["/etc/cellplane/zookeeper/zoo.cfg"]
    assert f"dataDir={ZK_DIR}\n" in zoo_cfg
    assert "--data-dir=/var/lib/cellplane/etcd" in catalog.roles["etcd"].command
    worker = catalog.roles["spark_worker"].command
    assert worker[worker.index("--work-dir") + 1] == "/var/lib/cellplane/spark"
    for role in ("redis_primary", "redis_replica"):
        assert (
            "dir /var/lib/redis\n"
            in catalog.roles[role].config_files["/etc/cellplane/redis/redis.conf"]
        )


def _node(catalog: Catalog, roles: list[str], disk: int) -> NodePlan:
    spec = parse_spec(
        {
            "nodeGroups": [
                {
                    "name": "g",
                    "roles": roles,
                    "instanceNum": 1,
                    "cpuNum": 1,
                    "memCapacityMB": 256,
                    "storage": {"sizeGB": disk},
                }
            ]
        }
    )
    return plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors={}).nodes[0]


def test_node_volume(catalog: Catalog) -> None:
    assert node_volume(_node(catalog, ["zookeeper"], 3), catalog) == NodeVolume(
        "c-g-0-data", 3, ZK_DIR
    )
    assert node_volume(_node(catalog, ["zookeeper"], 0), catalog) is None  # no disk size
    assert node_volume(_node(catalog, ["basic"], 3), catalog) is None  # no role keeps data
    # Two roles with data: one volume, at the first role's (start order) data_dir.
    both = node_volume(_node(catalog, ["etcd", "zookeeper"], 1), catalog)
    assert both == NodeVolume("c-g-0-data", 1, "/var/lib/cellplane/etcd")


def mount(volume: str, path: str = ZK_DIR) -> list[dict[str, Any]]:
    return [{"volume": volume, "path": path, "read_only": False}]


ZK = ["zk-zk-0", "zk-zk-1", "zk-zk-2"]


def test_each_node_gets_a_volume_mounted_at_its_role_data_dir(
    plat: Platform, ex: ClusterExecutor
) -> None:
    deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3), group("b", ["basic"], 1))
    vols = volumes(plat)
    assert sorted(vols) == [f"{n}-data" for n in ZK]  # the basic node keeps no data
    assert all(v.size_gb == 2 and v.host_id == plat.host_id for v in vols.values())
    now = cells(plat)
    for n in ZK:
        assert now[n].volumes == mount(f"{n}-data")
    assert now["zk-b-0"].volumes == []


def test_resume_recreates_a_failed_node_on_its_volume(plat: Platform, ex: ClusterExecutor) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    before, old_cell = volumes(plat), cells(plat)["zk-zk-1"].id
    with plat.svc.db.session() as s:  # the node failed; the provisioning stopped there
        node = s.scalar(select(ClusterNode).where(ClusterNode.name == "zk-zk-1"))
        assert node is not None
        node.state = "FAILED"
        row = s.get(Cluster, c.id)
        assert row is not None
        row.state = "PROVISION_ERROR"
    r = plat.client.post(f"/v1/clusters/{c.id}/resume", headers=plat.admin)
    assert r.status_code == 202, r.text
    c2 = run(plat, ex, "zk")
    assert c2 is not None and c2.state == "RUNNING", c2 and c2.message
    cell = cells(plat)["zk-zk-1"]
    assert cell.id != old_cell and cell.volumes == mount("zk-zk-1-data")
    after = volumes(plat)
    assert {n: v.id for n, v in after.items()} == {n: v.id for n, v in before.items()}


def test_delete_removes_the_volumes_once_the_cells_are_gone(
    plat: Platform, ex: ClusterExecutor
) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    r = plat.client.delete(f"/v1/clusters/{c.id}", headers=plat.admin)
    assert r.status_code == 202, r.text
    assert run(plat, ex, "zk") is None
    assert cells(plat) == {}
    eventually(lambda: volumes(plat) == {})  # the host confirms, then the rows go


def test_delete_with_keep_volumes_keeps_them_for_the_next_cluster_of_that_name(
    plat: Platform, ex: ClusterExecutor
) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    kept = {n: v.id for n, v in volumes(plat).items()}
    r = plat.client.delete(f"/v1/clusters/{c.id}?keepVolumes=true", headers=plat.admin)
    assert r.status_code == 202, r.text
    assert run(plat, ex, "zk") is None
    assert cells(plat) == {}
    time.sleep(0.2)
    assert {n: v.id for n, v in volumes(plat).items()} == kept
    assert all(v.state == "READY" for v in volumes(plat).values())
    # The same cluster again adopts them, and needs no new volume quota for them.
    r = plat.client.put("/v1/projects/default/quota", json={"volumes_gb": 6}, headers=plat.admin)
    assert r.status_code == 200, r.text
    deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    assert {n: v.id for n, v in volumes(plat).items()} == kept


def test_create_refused_when_the_volumes_do_not_fit_changes_nothing(
    plat: Platform, ex: ClusterExecutor
) -> None:
    r = plat.client.put("/v1/projects/default/quota", json={"volumes_gb": 5}, headers=plat.admin)
    assert r.status_code == 200, r.text
    r = create(plat, "zk", group("zk", ["zookeeper"], 3))
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == (
        "project default: volumes_gb quota is 5, 0 in use, this request needs 6"
    )
    with plat.svc.db.reader() as s:
        for model in (Cluster, ClusterNode, Cell, Volume):
            assert s.scalar(select(func.count()).select_from(model)) == 0, model
    # Nodes without data volumes need no volume quota.
    assert create(plat, "bb", group("b", ["basic"], 3)).status_code == 202


def test_resize_admits_and_removes_node_volumes(plat: Platform, ex: ClusterExecutor) -> None:
    c = deploy(
        plat,
        ex,
        "rd",
        group("primary", ["redis_primary"], 1, size=1),
        group("replica", ["redis_replica"], 2, size=1),
    )
    names = ["rd-primary-0-data", "rd-replica-0-data", "rd-replica-1-data"]
    assert sorted(volumes(plat)) == names
    assert cells(plat)["rd-replica-1"].volumes == mount("rd-replica-1-data", "/var/lib/redis")

    def resize(n: int) -> Any:
        return plat.client.post(
            f"/v1/clusters/{c.id}/resize",
            json={"nodeGroup": "replica", "instanceNum": n},
            headers=plat.admin,
        )

    r = plat.client.put("/v1/projects/default/quota", json={"volumes_gb": 3}, headers=plat.admin)
    assert r.status_code == 200, r.text
    r = resize(3)
    assert r.status_code == 409 and "volumes_gb quota is 3, 3 in use" in r.json()["detail"]
    r = resize(1)  # scale in: the removed node's volume goes with it
    assert r.status_code == 202, r.text
    c2 = run(plat, ex, "rd")
    assert c2 is not None and c2.state == "RUNNING", c2 and c2.message
    assert "rd-replica-1" not in cells(plat)
    eventually(lambda: sorted(volumes(plat)) == names[:2])


def test_delete_fails_while_another_cell_mounts_a_node_volume(
    plat: Platform, ex: ClusterExecutor
) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 1))
    r = plat.create_cell("reader", volumes=mount("zk-zk-0-data", "/data"))
    assert r.status_code == 202, r.text
    r = plat.client.delete(f"/v1/clusters/{c.id}", headers=plat.admin)
    assert r.status_code == 202, r.text
    after = run(plat, ex, "zk")
    assert after is not None and after.state == "DELETING"
    assert after.message is not None and "cannot delete its data volume" in after.message
    assert "zk-zk-0" not in cells(plat) and "zk-zk-0-data" in volumes(plat)


def test_export_delete_create_gives_the_same_cluster(plat: Platform, ex: ClusterExecutor) -> None:
    first = deploy(plat, ex, "eq", group("zk", ["zookeeper"], 3), group("b", ["basic"], 2, size=1))

    def shape(cluster_id: str) -> Any:
        view = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin).json()
        now = cells(plat)
        nodes = [
            (
                n["name"],
                n["group"],
                n["roles"],
                n["state"],
                now[n["name"]].cpu,
                now[n["name"]].memory_mb,
                now[n["name"]].disk_gb,
                now[n["name"]].volumes,
            )
            for n in view["nodes"]
        ]
        return view["nodeGroups"], nodes, sorted(view["endpoints"]), view["state"]

    before = shape(first.id)
    exported = plat.client.get(f"/v1/clusters/{first.id}/export", headers=plat.admin).json()
    r = plat.client.delete(f"/v1/clusters/{first.id}", headers=plat.admin)
    assert r.status_code == 202, r.text
    assert run(plat, ex, "eq") is None
    r = plat.client.post(
        "/v1/projects/default/clusters",
        json={"name": "eq", "spec": exported},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    second = run(plat, ex, "eq")
    assert second is not None and second.state == "RUNNING", second and second.message
    assert second.id != first.id
    assert shape(second.id) == before
