"""A node lost behind Cellplane's back is noticed and healed: never shown ready while its cell is
not, the cluster DEGRADED with a `node-lost` event naming it, then a HEAL brings it back and the
cluster is RUNNING again with a `node-healed` event (the `ex` fixture: executor_support.py)."""

from __future__ import annotations

from typing import Any

import pytest
from cellplane_executor_support import Executor, FakeAgent, cells, deploy, group, run
from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.clusters.health import CellFacts, node_problem
from cellplane.controller.clusters import NodeFailure
from cellplane.services import hosts as hosts_mod
from cellplane.state.cluster_models import ClusterNode
from cellplane.state.models import Cell


def test_node_problem() -> None:
    running = CellFacts("RUNNING", "RUNNING", 2)
    assert node_problem("SERVICE_READY", 2, running) is None
    assert node_problem("SERVICE_READY", None, running) is None  # unknown count: state only
    assert node_problem("SERVICE_READY", 2, None) == "its cell is gone"
    assert node_problem("FAILED", 2, None) is None  # only a node counted ready is lost
    assert node_problem("CONFIGURED", 0, running) is None
    failed = CellFacts("RUNNING", "FAILED", 2, "image gone")
    assert node_problem("SERVICE_READY", 2, failed) == "its cell failed: image gone"
    why = node_problem("SERVICE_READY", 1, running)
    assert why is not None and "restarted or recreated" in why and "1 -> 2" in why
    assert node_problem("SERVICE_READY", 2, CellFacts("RUNNING", "CREATING", 2)) == (
        "its cell is CREATING"
    )
    assert node_problem("SERVICE_READY", 2, CellFacts("DELETED", "RUNNING", 2)) is not None


def view(plat: Platform, cluster_id: str) -> Any:
    r = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin)
    assert r.status_code == 200, r.text
    return r.json()


def node(v: Any, name: str) -> Any:
    return next(n for n in v["nodes"] if n["name"] == name)


def test_a_recreated_container_degrades_the_cluster_until_the_node_is_healed(
    plat: Platform, ex: Executor
) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    assert ex.check_health() == []  # a healthy cluster is left alone
    cell = cells(plat)["zk-zk-1"]
    # The agent found the container removed (podman rm -f) and recreated it: a new container,
    # one restart more, the cell RUNNING again before anyone looked.
    hosts_mod.apply_status(
        plat.svc,
        plat.host_id,
        [{"cell_id": cell.id, "state": "RUNNING", "container_id": "ctr-new", "restarts": 1}],
    )
    v = view(plat, c.id)  # shown honestly even before the health pass ran
    assert v["state"] == "DEGRADED" and "node zk-zk-1 lost" in v["message"]
    assert node(v, "zk-zk-1")["state"] == "FAILED"
    assert node(v, "zk-zk-0")["state"] == "SERVICE_READY"

    assert ex.check_health() == [c.id]
    v = view(plat, c.id)
    assert v["state"] == "DEGRADED" and v["task"]["kind"] == "HEAL_CLUSTER"
    (lost,) = v["events"]
    assert lost["type"] == "node-lost" and lost["node"] == "zk-zk-1"
    assert "restarted or recreated" in lost["message"]
    assert ex.check_health() == []  # the HEAL is pending: not started twice
    # The cluster is busy healing: other operations wait for it.
    r = plat.client.post(f"/v1/clusters/{c.id}/stop", headers=plat.admin)
    assert r.status_code == 409 and "busy" in r.json()["detail"], r.text

    after = run(plat, ex, "zk")
    assert after is not None and after.state == "RUNNING", after and after.message
    v = view(plat, c.id)
    assert all(n["state"] == "SERVICE_READY" for n in v["nodes"])
    assert [e["type"] for e in v["events"]] == ["node-lost", "node-healed"]
    assert "node zk-zk-1 healed: its cell runs again" in v["events"][1]["message"]
    assert v["task"]["state"] == "COMPLETED"
    assert cells(plat)["zk-zk-1"].id == cell.id  # the same cell: its container came back
    with plat.svc.db.reader() as s:
        row = s.scalar(select(ClusterNode).where(ClusterNode.name == "zk-zk-1"))
        assert row is not None and row.ready_restarts == 1
    assert ex.check_health() == []  # healed: nothing to do

    # A delete takes the cells down on purpose: its nodes are not shown lost meanwhile.
    r = plat.client.delete(f"/v1/clusters/{c.id}", headers=plat.admin)
    assert r.status_code == 202, r.text
    with plat.svc.db.session() as s:
        for row in s.query(Cell):
            row.desired_state = "DELETED"
    v = view(plat, c.id)
    assert v["state"] == "DELETING"
    assert all(n["state"] == "SERVICE_READY" for n in v["nodes"]), v["nodes"]
    assert ex.check_health() == []


@pytest.mark.parametrize("how", ["failed", "gone"])
def test_a_failed_or_vanished_node_cell_is_replaced(
    plat: Platform, ex: Executor, agent: FakeAgent, how: str
) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    old = cells(plat)["zk-zk-2"]
    agent.hold.add(old.id)
    with plat.svc.db.session() as s:
        row = s.get(Cell, old.id)
        assert row is not None
        if how == "failed":
            row.state, row.message = "FAILED", "cannot start: the engine said no"
        else:
            s.delete(row)
    assert ex.check_health() == [c.id]
    (lost,) = view(plat, c.id)["events"]
    expected = "its cell failed: cannot start" if how == "failed" else "its cell is gone"
    assert expected in lost["message"] and lost["node"] == "zk-zk-2"
    after = run(plat, ex, "zk")
    assert after is not None and after.state == "RUNNING", after and after.message
    new = cells(plat)["zk-zk-2"]
    assert new.id != old.id and new.volumes == old.volumes  # a new cell, on its data volume
    v = view(plat, c.id)
    assert v["events"][-1]["type"] == "node-healed" and v["events"][-1]["node"] == "zk-zk-2"
    assert all(n["state"] == "SERVICE_READY" for n in v["nodes"])


def test_a_heal_that_fails_leaves_the_cluster_degraded_and_resume_retries(
    plat: Platform, ex: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    cell = cells(plat)["zk-zk-0"]
    hosts_mod.apply_status(
        plat.svc, plat.host_id, [{"cell_id": cell.id, "state": "RUNNING", "restarts": 3}]
    )
    assert ex.check_health() == [c.id]

    def never_ready(ctx: Any, cell_id: str, name: str, *rest: Any) -> None:
        raise NodeFailure(name, "zookeeper", "not ready after 60 s")

    monkeypatch.setattr(ex, "_wait_ready", never_ready)
    after = run(plat, ex, "zk")
    assert after is not None and after.state == "DEGRADED"
    assert after.message is not None and "cluster resume" in after.message
    v = view(plat, c.id)
    assert v["events"][-1]["type"] == "heal-failed" and v["events"][-1]["node"] == "zk-zk-0"
    assert ex.check_health() == []  # no loop of heals: the failed node waits for a resume
    monkeypatch.undo()
    r = plat.client.post(f"/v1/clusters/{c.id}/resume", headers=plat.admin)
    assert r.status_code == 202, r.text
    again = run(plat, ex, "zk")
    assert again is not None and again.state == "RUNNING", again and again.message


def test_a_node_stopped_by_the_operator_is_shown_not_ready_but_not_restarted(
    plat: Platform, ex: Executor
) -> None:
    """`cell stop` of a node is the operator's choice (a failover drill): no HEAL undoes it."""
    c = deploy(plat, ex, "zk", group("zk", ["zookeeper"], 3))
    stopped = cells(plat)["zk-zk-1"]
    with plat.svc.db.session() as s:
        row = s.get(Cell, stopped.id)
        assert row is not None
        row.desired_state, row.state = "STOPPED", "STOPPED"
    assert ex.check_health() == []
    v = view(plat, c.id)
    node = next(n for n in v["nodes"] if n["name"] == "zk-zk-1")
    assert node["state"] != "SERVICE_READY" and v["events"] == []
    with plat.svc.db.reader() as s:
        assert s.get(Cell, stopped.id).desired_state == "STOPPED"  # type: ignore[union-attr]
