"""A node's container removed behind Cellplane's back (`podman rm -f` on the agent's engine):
the cluster notices (DEGRADED, a `node-lost` event naming the node), heals it by itself (a
`node-healed` event), and the member rejoins with its data. etcd: the fastest real cluster."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group
from .test_cluster_etcd import CTL, wait_healthy

pytestmark = pytest.mark.integration


def test_a_removed_node_container_is_noticed_and_healed(api: Api, engine: PodmanDriver) -> None:
    need("/usr/bin/etcd", "/usr/bin/etcdctl")
    cid = api.create("hl", "etcd", {"nodeGroups": [small_group("etcd", ["etcd"], 3)]})
    c = api.settled(cid)
    assert c["state"] == "RUNNING", c["message"]
    assert c["events"] == []
    cells = api.node_cells(c)
    victim, first = cells["hl-etcd-1"], cells["hl-etcd-0"]
    code, out = api.sh(first, CTL + "put /cellplane/k kept")
    assert code == 0, out

    old = api.container(victim)
    engine.remove(old, force=True)

    def healed(view: dict[str, Any]) -> bool:
        kinds = [(e["type"], e["node"]) for e in view["events"]]
        return ("node-healed", "hl-etcd-1") in kinds and view["state"] == "RUNNING"

    c = api.wait(cid, healed, timeout=120)
    lost = next(e for e in c["events"] if e["type"] == "node-lost")
    assert lost["node"] == "hl-etcd-1" and "restarted or recreated" in lost["message"], lost
    assert c["task"]["kind"] == "HEAL_CLUSTER" and c["task"]["state"] == "COMPLETED"
    assert all(n["state"] == "SERVICE_READY" for n in c["nodes"]), c["nodes"]
    assert api.node_cells(c) == cells  # the same cells: the agent recreated the container
    assert api.container(victim) != old
    wait_healthy(api, first, 3)  # the member is back in the cluster, with its data
    code, out = api.sh(victim, CTL + "get --print-value-only /cellplane/k")
    assert out.strip() == "kept", out
    api.delete(cid)
