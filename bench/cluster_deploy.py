"""Benchmark: a cluster from spec to every role ready (ZooKeeper, etcd, Redis, RabbitMQ, Galera).

Starts a real deployment (server + agent + podman, `cellplane.testing.harness.Deployment`),
asks for the cluster through the SDK (`Client.create_cluster`, `Client.wait_cluster`) and measures from the
request to the cluster being RUNNING, which the executor declares only once every role of every
node passed its readiness probe (ZooKeeper: `srvr` reports leader/follower, i.e. a quorum).
Prints ONE JSON object on stdout: {"distro", "nodes", "seconds_to_ready", ...}; progress on
stderr. Target (DESIGN.md): a 3-node ZooKeeper ensemble in <= 20 s; RabbitMQ and Galera (issue
15): <= 60 s. For a distro other than ZooKeeper the same run (the same deployment, alternating)
also deploys ZooKeeper as the baseline: `baseline_seconds_to_ready`.

    python bench/cluster_deploy.py --distro zookeeper|etcd|redis|rabbitmq|galera [--runs 3]
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
    "rabbitmq": {"nodeGroups": [_group("rabbit", ["rabbitmq"], 3)]},
    "galera": {"nodeGroups": [_group("galera", ["galera"], 3)]},
}
TARGETS = {"zookeeper": 20, "rabbitmq": 60, "galera": 60}
BASELINE = "zookeeper"


def _deploy(client: Any, distro: str, name: str) -> float | str:
    """Seconds from the create request to RUNNING, or the failure message; deletes it after."""
    started = time.monotonic()
    task = client.create_cluster("default", name, distro=distro, spec=SPECS[distro])
    cid = str(task["entity"]["id"])
    view = client.wait_cluster(cid, str(task["id"]), timeout=300, interval=0.05)
    elapsed = time.monotonic() - started
    delete = client.delete_cluster(cid)
    client.wait_cluster(cid, str(delete["id"]), timeout=120)
    if view["state"] != "RUNNING":
        return str(view.get("message"))
    print(f"{distro} {name}: {elapsed:.2f} s", file=sys.stderr)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distro", choices=sorted(SPECS), default="zookeeper")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    spec = SPECS[args.distro]
    nodes = sum(g["instanceNum"] for g in spec["nodeGroups"])
    distros = [args.distro] if args.distro == BASELINE else [args.distro, BASELINE]
    times: dict[str, list[float]] = {d: [] for d in distros}
    with Deployment() as d, d.client(timeout=60) as client:
        for run in range(args.runs):
            for distro in distros:
                got = _deploy(client, distro, f"b{run}{distro[:2]}")
                if isinstance(got, str):
                    print(json.dumps({"distro": distro, "error": got}))
                    return 1
                times[distro].append(got)
    result: dict[str, Any] = {
        "distro": args.distro,
        "nodes": nodes,
        "seconds_to_ready": round(statistics.median(times[args.distro]), 2),
        "runs": [round(t, 2) for t in times[args.distro]],
        "target_seconds": TARGETS.get(args.distro),
    }
    if args.distro != BASELINE:
        result["baseline_distro"] = BASELINE
        result["baseline_seconds_to_ready"] = round(statistics.median(times[BASELINE]), 2)
        result["baseline_runs"] = [round(t, 2) for t in times[BASELINE]]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
