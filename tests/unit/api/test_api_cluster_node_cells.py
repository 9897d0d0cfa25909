"""A cluster's node cell is the cluster's: `cell rm` of it is refused with the cluster command
to use (the cluster would otherwise go on reporting the node ready); stop and start stay allowed,
and the cluster executor, acting for that cluster, still deletes it."""

from __future__ import annotations

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.errors import Conflict
from cellplane.identity.rbac import Principal
from cellplane.ids import new_id, utcnow
from cellplane.services import cells as cells_mod
from cellplane.state.cluster_models import Cluster
from cellplane.state.models import Cell, Project


def _node_cell(plat: Platform) -> tuple[str, str]:
    r = plat.create_cell("zk-zk-0")
    assert r.status_code == 202, r.text
    cell_id = plat.cell_id("zk-zk-0")
    now = utcnow()
    cluster_id = new_id("cls")
    with plat.svc.db.session() as s:
        cell = s.get(Cell, cell_id)
        assert cell is not None
        s.add(
            Cluster(
                id=cluster_id,
                project_id=cell.project_id,
                name="zk",
                distro="zookeeper",
                spec={},
                state="RUNNING",
                operation=None,
                operation_args={},
                created_by="test",
                created_at=now,
                updated_at=now,
            )
        )
        cell.labels = {**(cell.labels or {}), cells_mod.CLUSTER_LABEL: cluster_id, "cluster": "zk"}
    return cell_id, cluster_id


def test_cell_rm_of_a_cluster_node_is_refused_with_the_cluster_command(plat: Platform) -> None:
    cell_id, _ = _node_cell(plat)
    r = plat.client.delete(f"/v1/cells/{cell_id}", headers=plat.admin)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "cluster 'zk'" in detail and "cellplane cluster rm zk" in detail, detail
    assert plat.cell(cell_id)["desired_state"] == "RUNNING"
    # Stop and start are the node's own business (the cluster's probes see them).
    assert plat.client.post(f"/v1/cells/{cell_id}/stop", headers=plat.admin).status_code == 202
    assert plat.client.post(f"/v1/cells/{cell_id}/start", headers=plat.admin).status_code == 202


def test_the_owning_cluster_deletes_its_node_cell(plat: Platform) -> None:
    cell_id, cluster_id = _node_cell(plat)
    with plat.svc.db.reader() as s:
        tenant_id = s.scalar(select(Project.tenant_id).where(Project.name == "default").limit(1))
        assert tenant_id is not None
    # The executor's principal (records.ClusterRecords._ctx): a service acting for the cluster.
    executor = Principal(
        subject="test",
        tenant_id=tenant_id,
        tenant="default",
        roles=("project-member",),
        kind="service",
    )
    with plat.svc.db.session() as s, pytest.raises(Conflict):
        cells_mod.delete(plat.svc, s, executor, cell_id, owner=new_id("cls"))
    with plat.svc.db.session() as s:
        out = cells_mod.delete(plat.svc, s, executor, cell_id, owner=cluster_id)
    assert out.status == 202
    with plat.svc.db.reader() as s:  # not placed yet: removed at once
        cell = s.get(Cell, cell_id)
        assert cell is None or cell.desired_state == "DELETED"


def test_an_orphan_node_cell_whose_cluster_is_gone_can_be_removed(plat: Platform) -> None:
    cell_id, cluster_id = _node_cell(plat)
    with plat.svc.db.session() as s:
        s.delete(s.get(Cluster, cluster_id))
    assert plat.client.delete(f"/v1/cells/{cell_id}", headers=plat.admin).status_code == 202
