"""A 3-node ZooKeeper with `instancePerHost: 1` across the dev hosts, and the loss of the
leader's host (its namespace link cut, as `test_failover` does): the survivors elect a new
leader, the lost node is recreated on a fourth host (h4, added for it: with one node per host,
three hosts leave nowhere else to go) and syncs the data from the ensemble, a znode written
before is read after on the survivors and on the new node; when the lost host comes back its
old container is removed (fencing) and the old copy of the node's data is there, kept.

Runs after the other multihost modules (file order): h4 stays, in maintenance, until the
session's hosts are removed.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import httpx
import pytest
from tests.integration.multihost.conftest import TEST_UNDERLAY, ThreeHosts, wait_for

from cellplane import devhosts
from cellplane.client import CellplaneError
from cellplane.devhosts import hosts as devhosts_hosts
from cellplane.testing.waits import unique

pytestmark = pytest.mark.integration

ZK_CLI = (
    "java -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-nop.jar:"
    "/usr/share/java/log4j-1.2.jar org.apache.zookeeper.ZooKeeperMain -server 127.0.0.1:2181 "
)
SPEC = {
    "nodeGroups": [
        {
            "name": "zk",
            "roles": ["zookeeper"],
            "instanceNum": 3,
            "cpuNum": 1,
            "memCapacityMB": 512,
            "storage": {"sizeGB": 1},
            "placementPolicies": {"instancePerHost": 1},
        }
    ]
}


def _sh(three: ThreeHosts, cell: str, script: str) -> str:
    try:
        return str(three.client.exec_cell(cell, ["/bin/bash", "-c", script])["output"])
    except (CellplaneError, httpx.HTTPError) as e:  # its host is cut off, or it is replaced
        return f"(exec failed: {e})"


def _mode(three: ThreeHosts, cell: str) -> str:
    out = _sh(three, cell, "exec 3<>/dev/tcp/127.0.0.1/2181; printf srvr >&3; cat <&3")
    m = re.search(r"^Mode: (\w+)", out, re.M)
    return m.group(1) if m else "none"


def _nodes(three: ThreeHosts, cluster_id: str) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in three.client.get_cluster(cluster_id)["nodes"]}


def _containers(three: ThreeHosts, host: str, cell_id: str) -> list[str]:
    """Ids of the running containers of `cell_id` on dev host `host`, as its own podman sees."""
    dev = devhosts.get_host(three.data_dir, host)
    cmd = devhosts_hosts._engine_command(
        dev, "ps", "--format", "json", "--filter", f"label=cellplane.cell={cell_id}"
    )
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60)
    return [str(c["Id"]) for c in json.loads(done.stdout or "[]")]


def _link(three: ThreeHosts, host: str, state: str) -> None:
    dev = devhosts.get_host(three.data_dir, host)
    subprocess.run(
        ["nsenter", f"--net={dev.netns_path}", "ip", "link", "set", "eth0", state],
        check=True,
        timeout=30,
    )


def _add_spare_host(three: ThreeHosts, name: str) -> str:
    d = three.deployment
    token = three.client.create_join_token(ttl_s=600, uses=1)["token"]
    three.hosts[name] = devhosts.add_host(
        name,
        data_dir=d.data_dir,
        server_url=d.url,
        join_token=token,
        ca_file=d.ca_file,
        zone="z4",
        labels={"rack": "r4"},
        underlay=TEST_UNDERLAY,
    )
    try:
        return str(three.wait_state(name, "READY", 90)["id"])
    except AssertionError as e:
        raise AssertionError(f"{e}\nagent log of {name}:\n{three.log(name)}") from None


def test_zookeeper_across_hosts_survives_the_loss_of_the_leaders_host(
    three_hosts: ThreeHosts,
) -> None:
    c = three_hosts.client
    task = c.create_cluster("default", unique("zk"), distro="zookeeper", spec=SPEC)
    cid = task["entity"]["id"]
    lost_host: str | None = None
    spare_id: str | None = None
    try:
        view = c.wait_cluster(cid, task["id"], timeout=300)
        assert view["state"] == "RUNNING", (view["message"], view["nodes"])
        nodes = {n["name"]: n for n in view["nodes"]}
        assert sorted(n["host_name"] for n in nodes.values()) == ["h1", "h2", "h3"], nodes
        cells = {name: n["cell"] for name, n in nodes.items()}
        # Quorum over the overlay: one leader, two followers, each on its own host.
        modes = wait_for(
            lambda: (
                (m := {name: _mode(three_hosts, cell) for name, cell in cells.items()})
                and sorted(m.values()) == ["follower", "follower", "leader"]
                and m
            ),
            90,
            "a leader and two followers",
        )
        leader = next(name for name, mode in modes.items() if mode == "leader")
        survivors = {name: cell for name, cell in cells.items() if name != leader}
        writer = next(iter(survivors.values()))
        out = _sh(three_hosts, writer, ZK_CLI + "create /cellplane hello 2>&1")
        assert "Created /cellplane" in out, out

        spare_id = _add_spare_host(three_hosts, "h4")
        lost_host = str(nodes[leader]["host_name"])
        old_cell = cells[leader]
        _link(three_hosts, lost_host, "down")

        # The survivors elect a new leader among themselves.
        wait_for(
            lambda: "leader" in {_mode(three_hosts, cell) for cell in survivors.values()},
            120,
            "a new leader among the survivors",
        )

        # The lost node is recreated on the spare host and rejoins.
        def healed() -> dict[str, Any] | None:
            v = c.get_cluster(cid)
            kinds = [(e["type"], e["node"]) for e in v["events"]]
            done = ("node-healed", leader) in kinds and v["state"] == "RUNNING"
            return v if done else None

        try:
            view = wait_for(healed, 240, f"{leader} healed")
        except AssertionError as e:
            v = c.get_cluster(cid)
            raise AssertionError(f"{e}: {v['state']} {v['message']} {v['events']}") from None
        moved = next(e for e in view["events"] if e["type"] == "node-moved")
        assert moved["node"] == leader and f"host {lost_host} is DOWN" in moved["message"]
        assert "recreated on host h4" in moved["message"], moved
        new = {n["name"]: n for n in view["nodes"]}[leader]
        assert new["host_name"] == "h4" and new["cell"] != old_cell, new
        assert _mode(three_hosts, new["cell"]) in ("follower", "leader")
        # The data written before the loss: on the survivors and on the new node.
        for cell in [*survivors.values(), new["cell"]]:
            assert "hello" in _sh(three_hosts, cell, ZK_CLI + "get /cellplane 2>&1"), cell

        # The lost host comes back: its old container goes before it is READY again.
        _link(three_hosts, lost_host, "up")
        lost_host, returned = None, lost_host
        three_hosts.wait_state(returned, "READY", 120)
        assert _containers(three_hosts, returned, old_cell) == []
        # The old copy of the node's data is kept there, under a name that says so.
        kept = [
            v for v in c.iter_volumes("default") if v["name"].startswith(f"{leader}-data-lost-")
        ]
        assert len(kept) == 1 and kept[0]["attached_to"] == [], kept
        c.delete_volume(kept[0]["id"])
    finally:
        if lost_host is not None:
            _link(three_hosts, lost_host, "up")
        done = c.delete_cluster(cid)
        c.wait_cluster(cid, done["id"], timeout=180)
        if spare_id is not None:
            c.set_maintenance(spare_id, True)
