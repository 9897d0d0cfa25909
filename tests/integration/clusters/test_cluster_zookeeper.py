"""ZooKeeper 3-node ensemble from a spec, on Debian's zookeeper package: quorum, data, failover,
data volumes (a recreated node keeps its data; `keepVolumes` keeps them past the cluster)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group

pytestmark = pytest.mark.integration

ZK_CLI = (
    "java -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar:"
    "/usr/share/java/log4j-1.2.jar org.apache.zookeeper.ZooKeeperMain -server 127.0.0.1:2181 "
)
DATA_DIR = "/var/lib/cellplane/zookeeper"  # zoo.cfg's dataDir, the role's data_dir


def mode(api: Api, cell: str) -> str:
    try:
        code, out = api.sh(cell, "exec 3<>/dev/tcp/127.0.0.1/2181; printf srvr >&3; cat <&3")
    except httpx.HTTPStatusError as e:  # the container is being restarted
        return f"none ({e.response.status_code})"
    m = re.search(r"^Mode: (\w+)", out, re.M)
    return m.group(1) if m else f"none ({code}: {out.strip()[:80]})"


def modes(api: Api, cells: dict[str, str]) -> dict[str, str]:
    return {name: mode(api, cell) for name, cell in cells.items()}


def zk(api: Api, cell: str, command: str) -> str:
    _code, out = api.sh(cell, ZK_CLI + command + " 2>&1")
    return out


def node_volumes(api: Api) -> dict[str, list[str]]:
    """The cluster's data volumes (`<node>-data`) and the cells each is attached to."""
    items = api.get("/v1/projects/default/volumes")["items"]
    return {v["name"]: v["attached_to"] for v in items if v["name"].startswith("zk-zk-")}


def wait_gone(api: Api, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while api.http.get(path).status_code != 404:
        assert time.monotonic() < deadline, f"{path} still there"
        time.sleep(0.3)


def healed(cluster: dict[str, Any]) -> list[str]:
    """The nodes of the cluster's `node-healed` events, in order."""
    return [e["node"] for e in cluster["events"] if e["type"] == "node-healed"]


def test_zookeeper_ensemble(api: Api, engine: PodmanDriver) -> None:
    need("/usr/share/java/zookeeper.jar")
    started = time.monotonic()
    cid = api.create("zk", "zookeeper", {"nodeGroups": [small_group("zk", ["zookeeper"], 3)]})
    c = api.settled(cid)
    assert c["state"] == "RUNNING", c["message"]
    assert time.monotonic() - started < 60
    assert all(n["state"] == "SERVICE_READY" for n in c["nodes"])
    assert c["endpoints"]["zookeeper"]["client"] == [f"zk-zk-{i}:2181" for i in range(3)]
    cells = api.node_cells(c)

    found = modes(api, cells)
    assert sorted(found.values()) == ["follower", "follower", "leader"], found

    # A znode written through one member is read through another.
    out = zk(api, cells["zk-zk-0"], "create /cellplane hello")
    assert "Created /cellplane" in out, out
    assert "hello" in zk(api, cells["zk-zk-1"], "get /cellplane")

    # Kill the leader's container: the others elect a new leader; the data survives.
    leader = next(n for n, m in found.items() if m == "leader")
    engine.kill(api.container(cells[leader]))
    others = {n: cell for n, cell in cells.items() if n != leader}
    deadline = time.monotonic() + 60
    now = modes(api, others)
    while time.monotonic() < deadline and "leader" not in now.values():
        time.sleep(0.5)
        now = modes(api, others)
    assert "leader" in now.values(), now
    survivor = next(iter(others.values()))
    assert "hello" in zk(api, survivor, "get /cellplane")
    # The killed member comes back (restart policy) and rejoins as a follower.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and mode(api, cells[leader]) != "follower":
        time.sleep(0.5)
    assert mode(api, cells[leader]) == "follower"
    assert "hello" in zk(api, cells[leader], "get /cellplane")
    # The cluster noticed the restarted node and healed it (probed again): RUNNING again.
    api.wait(cid, lambda c: healed(c) == [leader] and c["state"] == "RUNNING", timeout=120)

    # Each node has its own data volume, mounted at the dataDir.
    assert node_volumes(api) == {f"{n}-data": [cell] for n, cell in cells.items()}
    # A node's container removed outside Cellplane is recreated (node cells restart `always`)
    # and finds its data on its volume. (Deleting a node's cell directly is refused: the
    # cluster owns it; see tests/unit/api/test_api_cluster_node_cells.py.)
    code, out = api.sh(cells["zk-zk-0"], f"echo kept > {DATA_DIR}/marker")
    assert code == 0, out
    old_container = api.container(cells["zk-zk-0"])
    engine.remove(old_container, force=True)
    deadline = time.monotonic() + 60
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = api.get(f"/v1/cells/{cells['zk-zk-0']}")
        if view["state"] == "RUNNING" and view["container_id"] not in (None, old_container):
            break
        time.sleep(0.5)
    assert view["state"] == "RUNNING" and view["container_id"] != old_container, view
    _code, out = api.sh(cells["zk-zk-0"], f"cat {DATA_DIR}/marker {DATA_DIR}/myid")
    assert out.split() == ["kept", "1"], out
    api.wait(
        cid, lambda c: healed(c) == [leader, "zk-zk-0"] and c["state"] == "RUNNING", timeout=120
    )

    # Deleted with keepVolumes: the volumes stay; the cluster created again adopts them (the
    # znode is back) and a plain delete then removes them.
    r = api.http.delete(f"/v1/clusters/{cid}", params={"keepVolumes": "true"})
    assert r.status_code == 202, r.text
    wait_gone(api, f"/v1/clusters/{cid}")
    for cell in cells.values():
        assert api.http.get(f"/v1/cells/{cell}").status_code == 404
    assert node_volumes(api) == {f"{n}-data": [] for n in cells}
    cid = api.create("zk", "zookeeper", {"nodeGroups": [small_group("zk", ["zookeeper"], 3)]})
    c = api.settled(cid)
    assert c["state"] == "RUNNING", c["message"]
    assert "hello" in zk(api, api.node_cells(c)["zk-zk-2"], "get /cellplane")
    api.delete(cid)
    assert node_volumes(api) == {}
