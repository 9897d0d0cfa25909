"""A resize run again after the server died in its middle: the node it had added (its row and
cell made, not yet found ready) is brought up by the run again, on the same cell; before, the
diff saw the group already at its new size and the resize ended RUNNING with that node never
ready. The real kill -9 is tests/integration/clusters/test_cluster_crash_safety.py."""

from __future__ import annotations

from cellplane_executor_support import cells, deploy, group, run
from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.controller.clusters import ClusterExecutor
from cellplane.state.cluster_models import Cluster, ClusterNode


def _node_states(plat: Platform, cluster_id: str) -> dict[str, str]:
    with plat.svc.db.reader() as s:
        rows = s.scalars(select(ClusterNode).where(ClusterNode.cluster_id == cluster_id)).all()
        return {n.name: n.state for n in rows}


def test_a_resize_run_again_finishes_the_node_it_had_added(
    plat: Platform, ex: ClusterExecutor
) -> None:
    c = deploy(plat, ex, "bb", group("b", ["basic"], 2, size=1))
    r = plat.client.post(
        f"/v1/clusters/{c.id}/resize",
        json={"nodeGroup": "b", "instanceNum": 3},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    with plat.svc.db.reader() as s:
        row = s.get(Cluster, c.id)
        assert row is not None and row.operation == "RESIZE"
        pending = (row.operation, dict(row.operation_args), row.state, dict(row.spec))
    done = run(plat, ex, "bb")
    assert done is not None and done.state == "RUNNING"
    added = cells(plat)["bb-b-2"]

    # As the server left it when killed: the new node's cell runs, it is not ready yet, and the
    # operation is still on the row (the spec is updated only at the end).
    with plat.svc.db.session() as s:
        node = s.scalar(select(ClusterNode).where(ClusterNode.name == "bb-b-2"))
        assert node is not None
        node.state = "CONFIGURED"
        row = s.get(Cluster, c.id)
        assert row is not None
        row.operation, row.operation_args, row.state, row.spec = pending
    again = run(plat, ex, "bb")
    assert again is not None and again.state == "RUNNING", again and again.message
    assert _node_states(plat, c.id) == {f"bb-b-{i}": "SERVICE_READY" for i in range(3)}
    now = cells(plat)
    assert sorted(n for n in now if n.startswith("bb-")) == ["bb-b-0", "bb-b-1", "bb-b-2"]
    assert now["bb-b-2"].id == added.id  # its running cell was kept, not made again
