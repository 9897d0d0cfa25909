"""etcd 3-member cluster from a spec on Debian's etcd-server: health, data, a lost member, scale out."""

from __future__ import annotations

import time

import httpx
import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group

pytestmark = pytest.mark.integration

CTL = "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 --dial-timeout=2s --command-timeout=5s "


def healthy(api: Api, cell: str) -> int:
    try:
        _code, out = api.sh(cell, CTL + "endpoint health --cluster 2>&1")
    except httpx.HTTPStatusError:
        return 0
    return sum(1 for line in out.splitlines() if "is healthy" in line)


def wait_healthy(api: Api, cell: str, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(api, cell) == n:
            return
        time.sleep(0.5)
    _code, out = api.sh(cell, CTL + "endpoint health --cluster 2>&1")
    raise AssertionError(f"not {n} healthy members: {out}")


def test_etcd_cluster(api: Api, engine: PodmanDriver) -> None:
    need("/usr/bin/etcd", "/usr/bin/etcdctl")
    cid = api.create("et", "etcd", {"nodeGroups": [small_group("etcd", ["etcd"], 3)]})
    c = api.settled(cid)
    assert c["state"] == "RUNNING", c["message"]
    cells = api.node_cells(c)
    first, second, third = (cells[f"et-etcd-{i}"] for i in range(3))
    wait_healthy(api, first, 3)

    code, out = api.sh(first, CTL + "put /cellplane/k hello")
    assert code == 0 and "OK" in out, out
    code, out = api.sh(second, CTL + "get --print-value-only /cellplane/k")
    assert out.strip() == "hello", out

    # One member killed: the other two still serve reads and writes.
    engine.kill(api.container(third))
    # If the killed member led, the other two elect a new leader first (election timeout 1 s,
    # longer on a loaded machine); like any etcd client, retry until then.
    deadline = time.monotonic() + 30
    while True:
        code, out = api.sh(first, CTL + "put /cellplane/k2 still")
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == 0, out
    code, out = api.sh(second, CTL + "get --print-value-only /cellplane/k2")
    assert out.strip() == "still", out
    wait_healthy(api, first, 3)  # the killed member comes back (restart policy) with its data
    # The cluster noticed (its container restarted) and healed the node: RUNNING again.
    api.wait(
        cid,
        lambda c: (
            c["state"] == "RUNNING"
            and any(e["type"] == "node-healed" and e["node"] == "et-etcd-2" for e in c["events"])
        ),
        timeout=120,
    )

    # Scale out to 5: each new member is added with `etcdctl member add` and joins.
    r = api.post(f"/v1/clusters/{cid}/resize", {"nodeGroup": "etcd", "instanceNum": 5})
    assert r.status_code == 202, r.text
    c = api.settled(cid, timeout=180)
    assert c["state"] == "RUNNING", c["message"]
    assert len(c["nodes"]) == 5
    wait_healthy(api, first, 5)
    code, out = api.sh(api.node_cells(c)["et-etcd-4"], CTL + "get --print-value-only /cellplane/k")
    assert out.strip() == "hello", out
    exported = api.get(f"/v1/clusters/{cid}/export")
    assert exported["nodeGroups"][0]["instanceNum"] == 5

    # Scale in is refused: etcd members are not removed automatically.
    r = api.post(f"/v1/clusters/{cid}/resize", {"nodeGroup": "etcd", "instanceNum": 3})
    assert r.status_code == 409, r.text
    assert "cannot be scaled in" in r.json()["detail"]
    api.delete(cid)
