"""A cluster node whose host is DOWN: noticed as lost when it can be recreated on another READY
host its group's policies allow, and recreated there (a fresh cell and data volume; the old copy
of its data kept, renamed, on the lost host, which fences the old container when it is back);
left to come back with its host when it cannot move (the `ex` fixture: executor_support.py; the
fake agent plays every registered host but the lost ones)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cellplane_executor_support import Executor, FakeAgent, cells, deploy, group, run, volumes
from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.clusters.health import CellFacts, node_problem
from cellplane.ids import utcnow
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Host


def test_a_node_whose_host_is_down_is_lost() -> None:
    down = CellFacts("RUNNING", "RUNNING", 0, host_down="host h1 is DOWN (no heartbeat for 11 s)")
    assert node_problem("SERVICE_READY", 0, down) == ("its host h1 is DOWN (no heartbeat for 11 s)")
    assert node_problem("CONFIGURED", 0, down) is None  # only a node counted ready is lost


def one_per_host(n: int) -> dict[str, Any]:
    return {**group("zk", ["zookeeper"], n), "placementPolicies": {"instancePerHost": 1}}


def lose_host(plat: Platform, agent: FakeAgent, host_id: str) -> None:
    """The host's agent is gone: it plays it no more and its last heartbeat is an hour old."""
    agent.hosts = agent.hosts - {host_id}
    with plat.svc.db.session() as s:
        h = s.get(Host, host_id)
        assert h is not None
        h.last_heartbeat = utcnow() - timedelta(hours=1)


def events(plat: Platform, cluster_id: str) -> list[tuple[str, str | None, str]]:
    r = plat.client.get(f"/v1/clusters/{cluster_id}", headers=plat.admin)
    assert r.status_code == 200, r.text
    return [(e["type"], e["node"], e["message"]) for e in r.json()["events"]]


def test_a_node_on_a_down_host_is_recreated_on_a_spare_host(
    plat: Platform, ex: Executor, agent: FakeAgent
) -> None:
    names = {plat.host_id: "host-1"}
    for name in ("host-2", "host-3", "host-4"):
        names[plat.register_host(name)[0]] = name
    agent.hosts = set(names)
    c = deploy(plat, ex, "zk", one_per_host(3))
    old = cells(plat)["zk-zk-1"]
    used = {cell.host_id for cell in cells(plat).values()}
    assert len(used) == 3 and old.host_id is not None
    (spare,) = set(names) - used
    old_volume = volumes(plat)["zk-zk-1-data"]
    others = {n: cell.id for n, cell in cells(plat).items() if n != "zk-zk-1"}
    assert old_volume.host_id == old.host_id

    lose_host(plat, agent, old.host_id)
    assert ex.check_health() == [c.id]
    (lost,) = events(plat, c.id)
    assert lost[:2] == ("node-lost", "zk-zk-1")
    assert f"its host {names[old.host_id]} is DOWN (no heartbeat for" in lost[2]

    after = run(plat, ex, "zk")
    assert after is not None and after.state == "RUNNING", after and after.message
    new = cells(plat)["zk-zk-1"]
    assert new.id != old.id and new.host_id == spare and new.state == "RUNNING"
    assert after.placement["hosts"]["zk-zk-1"] == spare
    # A fresh data volume on the new host; the old copy kept on the lost host, renamed.
    vols = volumes(plat)
    assert vols["zk-zk-1-data"].id != old_volume.id and vols["zk-zk-1-data"].host_id == spare
    kept = vols[f"zk-zk-1-data-lost-{old_volume.id[-6:].lower()}"]
    assert kept.id == old_volume.id and kept.host_id == old.host_id and kept.state == "READY"
    kinds = [(kind, node) for kind, node, _ in events(plat, c.id)]
    assert kinds == [
        ("node-lost", "zk-zk-1"),
        ("node-moved", "zk-zk-1"),
        ("node-healed", "zk-zk-1"),
    ]
    moved = events(plat, c.id)[1][2]
    assert f"recreated on host {names[spare]} with an empty data volume" in moved
    assert kept.name in moved
    with plat.svc.db.reader() as s:
        lost_host = s.get(Host, old.host_id)
        assert lost_host is not None
        # Back, it removes the old container before it counts as READY again.
        assert lost_host.fence_revision > lost_host.fenced_revision
    assert ex.check_health() == []  # healed: the other nodes were left alone
    assert {n: cell.id for n, cell in cells(plat).items() if n != "zk-zk-1"} == others


@pytest.mark.parametrize(
    ("hosts", "size"),
    [
        (3, 3),  # one node per host: the two other hosts are taken
        (2, 1),  # the only node of its group: its data has no other copy
    ],
)
def test_a_node_that_cannot_move_is_left_to_come_back_with_its_host(
    plat: Platform, ex: Executor, agent: FakeAgent, hosts: int, size: int
) -> None:
    ids = {plat.host_id, *(plat.register_host(f"host-{i}")[0] for i in range(2, hosts + 1))}
    agent.hosts = ids
    c = deploy(plat, ex, "zk", one_per_host(size))
    name = f"zk-zk-{size - 1}"
    old = cells(plat)[name]
    old_volumes = {n: v.id for n, v in volumes(plat).items()}
    assert old.host_id is not None
    lose_host(plat, agent, old.host_id)
    # Not counted lost (a heal could only fail): its container is still there when the host is
    # back, as before hosts were watched.
    assert ex.check_health() == []
    assert events(plat, c.id) == []
    assert cells(plat)[name].id == old.id
    assert {n: v.id for n, v in volumes(plat).items()} == old_volumes
    with plat.svc.db.reader() as s:
        row = s.scalar(select(Cluster).where(Cluster.id == c.id))
        assert row is not None and row.state == "RUNNING" and row.operation is None
        assert row.placement["hosts"][name] == old.host_id
        node = s.scalar(select(ClusterNode).where(ClusterNode.name == name))
        assert node is not None and node.state == "SERVICE_READY"


def test_a_node_whose_spare_host_went_away_before_its_heal_fails_naming_why(
    plat: Platform, ex: Executor, agent: FakeAgent
) -> None:
    ids = [plat.host_id, *(plat.register_host(f"host-{i}")[0] for i in (2, 3, 4))]
    agent.hosts = set(ids)
    c = deploy(plat, ex, "zk", one_per_host(3))
    old = cells(plat)["zk-zk-0"]
    assert old.host_id is not None
    (spare,) = set(ids) - {cell.host_id for cell in cells(plat).values()}
    lose_host(plat, agent, old.host_id)
    assert ex.check_health() == [c.id]
    lose_host(plat, agent, spare)  # gone too before the heal ran
    after = run(plat, ex, "zk")
    assert after is not None and after.state == "DEGRADED"
    assert "no READY host can take it" in (after.message or ""), after.message
    assert events(plat, c.id)[-1][0] == "heal-failed"
    assert cells(plat)["zk-zk-0"].id == old.id  # nothing changed
