"""Benchmark: a cluster from spec to every role ready (every distro of the shipped catalog).

Starts a real deployment (server + agent + podman, `cellplane.testing.harness.Deployment`),
asks for the cluster through the SDK (`Client.create_cluster`, `Client.wait_cluster`) and measures from the
request to the cluster being RUNNING, which the executor declares only once every role of every
node passed its readiness probe (ZooKeeper: `srvr` reports leader/follower, i.e. a quorum).
Prints ONE JSON object on stdout: {"distro", "nodes", "seconds_to_ready", ...}; progress on
stderr. Targets: a 3-node ZooKeeper ensemble in <= 20 s (DESIGN.md), the other distros in <= 60 s
(issue 15). For a distro other than ZooKeeper, ZooKeeper is measured in the same run, on the same
deployment, alternating, as the baseline (`"baseline"` in the JSON; `--no-baseline` skips it).

Spark (a master and two workers; ready = the master lists every worker ALIVE) also times a
PySpark job (spark-submit from the master's cell to spark://<master>:7077, sum of 10^5
squares, its answer checked): `job_seconds`.

    python bench/cluster_deploy.py --distro zookeeper|etcd|redis|postgres-ha|rabbitmq|galera|spark
        [--runs 3] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from typing import Any

import httpx

from cellplane.testing.harness import Deployment


def _group(name: str, roles: list[str], n: int, memory_mb: int = 512) -> dict[str, Any]:
    # Explicit sizes and no instancePerHost: the benchmark runs on one host.
    return {
        "name": name,
        "roles": roles,
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": memory_mb,
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
    # Ready = Patroni reports one leader and every replica's WAL receiver streams.
    "postgres-ha": {
        "nodeGroups": [_group("etcd", ["etcd"], 3), _group("postgres", ["patroni"], 3)]
    },
    "rabbitmq": {"nodeGroups": [_group("rabbit", ["rabbitmq"], 3)]},
    "galera": {"nodeGroups": [_group("galera", ["galera"], 3)]},
    # The master's cell also runs the job's driver (512 MB heap) next to the master.
    "spark": {
        "nodeGroups": [
            _group("master", ["spark_master"], 1, memory_mb=1536),
            _group("worker", ["spark_worker"], 2, memory_mb=1024),
        ]
    },
}

SPARK_BIN = "/opt/cellplane/spark/pyspark/bin"
SPARK_JOB = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.appName('bench-squares').getOrCreate()\n"
    "rdd = spark.sparkContext.parallelize(range(1, 100001), 4)\n"
    "print('SUM=%d' % rdd.map(lambda x: x * x).sum())\n"
    "spark.stop()\n"
)


def _spark_job(d: Deployment, view: dict[str, Any]) -> float:
    """Wall time of spark-submit of a small PySpark job from the master's cell; checks its sum."""
    master = next(n for n in view["nodes"] if "spark_master" in n["roles"])
    script = (
        f"printf %s {shlex.quote(SPARK_JOB)} > /tmp/bench.py && "
        f"{SPARK_BIN}/spark-submit --master spark://{master['name']}:7077 "
        f"--driver-memory 512m --executor-memory 512m --conf spark.driver.host={master['name']} "
        "--conf spark.ui.enabled=false /tmp/bench.py 2>/tmp/bench.log || "
        "{ tail -n 20 /tmp/bench.log; exit 1; }"
    )
    headers = {"Authorization": f"Bearer {d.admin_token}"}
    started = time.monotonic()
    r = httpx.post(
        f"{d.url}/v1/cells/{master['cell']}/exec",
        json={"command": ["/bin/bash", "-c", script], "timeout": 300},
        headers=headers,
        timeout=320,
        verify=d.verify,
    )
    elapsed = time.monotonic() - started
    r.raise_for_status()
    out = r.json()
    expected = sum(x * x for x in range(1, 100001))
    if out["exit_code"] != 0 or f"SUM={expected}" not in out["output"]:
        raise RuntimeError(f"the Spark job failed: {out['output'][-2000:]}")
    return elapsed


def _deploy(client: Any, name: str, distro: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    task = client.create_cluster("default", name, distro=distro, spec=SPECS[distro])
    cid = str(task["entity"]["id"])
    view = client.wait_cluster(cid, str(task["id"]), timeout=300, interval=0.05)
    elapsed = time.monotonic() - started
    if view["state"] != "RUNNING":
        raise RuntimeError(f"{distro}: {view.get('message')}")
    return elapsed, dict(view)


def _delete(client: Any, view: dict[str, Any]) -> None:
    delete = client.delete_cluster(str(view["id"]))
    client.wait_cluster(str(view["id"]), str(delete["id"]), timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distro", choices=sorted(SPECS), default="zookeeper")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the ZooKeeper baseline measured in the same run for the other distros",
    )
    args = parser.parse_args()
    spec = SPECS[args.distro]
    nodes = sum(g["instanceNum"] for g in spec["nodeGroups"])
    times: list[float] = []
    jobs: list[float] = []
    baseline: list[float] = []
    with Deployment() as d, d.client(timeout=60) as client:
        for run in range(args.runs):
            try:
                elapsed, view = _deploy(client, f"b{run}", args.distro)
                if args.distro == "spark":
                    jobs.append(_spark_job(d, view))
                _delete(client, view)
                if args.distro != "zookeeper" and not args.no_baseline:
                    zk_elapsed, zk_view = _deploy(client, f"z{run}", "zookeeper")
                    baseline.append(zk_elapsed)
                    _delete(client, zk_view)
            except (RuntimeError, httpx.HTTPError) as exc:
                print(json.dumps({"distro": args.distro, "error": str(exc)}))
                return 1
            times.append(elapsed)
            extra = f", job {jobs[-1]:.2f} s" if jobs else ""
            extra += f", zookeeper {baseline[-1]:.2f} s" if baseline else ""
            print(f"run {run}: {elapsed:.2f} s{extra}", file=sys.stderr)
    result: dict[str, Any] = {
        "distro": args.distro,
        "nodes": nodes,
        "seconds_to_ready": round(statistics.median(times), 2),
        "runs": [round(t, 2) for t in times],
        "target_seconds": 20 if args.distro == "zookeeper" else 60,
    }
    if jobs:
        result["job_seconds"] = round(statistics.median(jobs), 2)
        result["job_runs"] = [round(t, 2) for t in jobs]
    if baseline:
        result["baseline"] = {
            "distro": "zookeeper",
            "seconds_to_ready": round(statistics.median(baseline), 2),
            "runs": [round(t, 2) for t in baseline],
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
