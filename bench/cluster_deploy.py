"""Benchmark: a cluster from spec to every role ready (ZooKeeper, etcd or Redis).

Starts a real deployment (server + agent + podman, `cellplane.testing.harness.Deployment`),
asks for the cluster through the SDK (`Client.create_cluster`, `Client.wait_cluster`) and measures from the
request to the cluster being RUNNING, which the executor declares only once every role of every
node passed its readiness probe (ZooKeeper: `srvr` reports leader/follower, i.e. a quorum).
Prints ONE JSON object on stdout: {"distro", "nodes", "seconds_to_ready", ...}; progress on
stderr. Target (DESIGN.md): a 3-node ZooKeeper ensemble in <= 20 s.

    python bench/cluster_deploy.py --distro zookeeper [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from cellplane.testing.harness import Deployment


def _group(name: str, roles: list[str], n: int) -> dict[str, Any]:
    # Explicit sizes and no instancePerHost: the benchmark runs on one host.
    return {
        "name": name,
        "roles": roles,
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": 512,
        "storage": {"sizeGB": 1},
    }


SPECS: dict[str, dict[str, Any]] = {
    "zookeeper": {"nodeGroups": [_group("zk", ["zookeeper"], 3)]},
    "etcd": {"nodeGroups": [_group("etcd", ["etcd"], 3)]},
    "redis": {
        "nodeGroups": [
            _group("primary", ["redis_primary"], 1),
            _group("replica", ["redis_replica"], 2),
            _group("sentinel", ["redis_sentinel"], 3),
        ]
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distro", choices=sorted(SPECS), default="zookeeper")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    spec = SPECS[args.distro]
    nodes = sum(g["instanceNum"] for g in spec["nodeGroups"])
    times: list[float] = []
    with Deployment() as d, d.client(timeout=60) as client:
        for run in range(args.runs):
            name = f"b{run}"
            started = time.monotonic()
            task = client.create_cluster("default", name, distro=args.distro, spec=spec)
            cid = str(task["entity"]["id"])
            view = client.wait_cluster(cid, str(task["id"]), timeout=300, interval=0.05)
            elapsed = time.monotonic() - started
            if view["state"] != "RUNNING":
                print(json.dumps({"distro": args.distro, "error": view.get("message")}))
                return 1
            times.append(elapsed)
            print(f"run {run}: {elapsed:.2f} s", file=sys.stderr)
            delete = client.delete_cluster(cid)
            client.wait_cluster(cid, str(delete["id"]), timeout=120)
    result = {
        "distro": args.distro,
        "nodes": nodes,
        "seconds_to_ready": round(statistics.median(times), 2),
        "runs": [round(t, 2) for t in times],
        "target_seconds": 20 if args.distro == "zookeeper" else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
