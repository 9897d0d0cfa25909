"""Spark standalone from the catalog's `spark` distro (pyspark's Spark on Debian's OpenJDK 17):
a master and two workers, a real PySpark job submitted from a cell to spark://<master>:7077 with
its answer checked, workers resized 2 -> 3 -> 1 with the master's /json/ view following, and a
worker whose container is removed recreated and registered with the master again."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group

pytestmark = pytest.mark.integration

SPARK = "/opt/cellplane/spark/pyspark/bin"
# Run in the master's cell: the master's own view of its workers.
WORKERS = (
    "import json, urllib.request as u; "
    "s = json.load(u.urlopen('http://127.0.0.1:8080/json/', timeout=5)); "
    "print(json.dumps([[w['host'], w['id'], w['state']] for w in s['workers']]))"
)
# Sum of the squares of 1..100000, computed by the executors on the workers.
JOB = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("cellplane-squares").getOrCreate()
rdd = spark.sparkContext.parallelize(range(1, 100001), 4)
print("SUM=%d" % rdd.map(lambda x: x * x).sum())
spark.stop()
"""
EXPECTED = sum(x * x for x in range(1, 100001))


def alive(api: Api, master: str) -> dict[str, str]:
    """Worker host -> worker id, for the workers the master lists ALIVE."""
    code, out = api.exec(master, ["/usr/bin/python3", "-c", WORKERS])
    assert code == 0, out
    return {host: wid for host, wid, state in json.loads(out) if state == "ALIVE"}


def wait_alive(api: Api, master: str, hosts: set[str], timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    seen = alive(api, master)
    while set(seen) != hosts and time.monotonic() < deadline:
        time.sleep(1)
        seen = alive(api, master)
    assert set(seen) == hosts, f"master lists {seen} ALIVE, not {sorted(hosts)}"
    return seen


def resize(api: Api, cid: str, n: int) -> dict[str, Any]:
    r = api.post(f"/v1/clusters/{cid}/resize", {"nodeGroup": "worker", "instanceNum": n})
    assert r.status_code == 202, r.text
    c = api.settled(cid, timeout=180)
    assert c["state"] == "RUNNING", c["message"]
    return dict(c)


def test_spark_cluster_runs_a_job_resizes_and_heals(api: Api, engine: PodmanDriver) -> None:
    need("/usr/bin/java", f"{SPARK}/spark-class")
    # The master's cell also runs the job's driver (512 MB heap) next to the master's 256 MB.
    spec = {
        "nodeGroups": [
            small_group("master", ["spark_master"], 1, memCapacityMB=1536),
            small_group("worker", ["spark_worker"], 2, memCapacityMB=1024),
        ]
    }
    cid = api.create("sp", "spark", spec)
    c = api.settled(cid, timeout=180)
    assert c["state"] == "RUNNING", (c["message"], [n["log_tail"] for n in c["nodes"]])
    assert c["endpoints"]["spark_master"] == {
        "master": ["sp-master-0:7077"],
        "ui": ["sp-master-0:8080"],
    }
    assert c["endpoints"]["spark_worker"]["ui"] == ["sp-worker-0:8081", "sp-worker-1:8081"]
    assert c["urls"]["spark_master"] == {
        "master": ["spark://sp-master-0:7077"],
        "ui": ["http://sp-master-0:8080"],
    }
    master = api.node_cells(c)["sp-master-0"]
    wait_alive(api, master, {"sp-worker-0", "sp-worker-1"})

    # A real job, submitted from the master's cell to the cluster (client mode: the driver runs
    # here, the executors on the workers).
    code, out = api.sh(master, f"cat > /tmp/squares.py <<'EOF'\n{JOB}EOF")
    assert code == 0, out
    submit = (
        f"{SPARK}/spark-submit --master spark://sp-master-0:7077 --driver-memory 512m "
        "--executor-memory 512m --conf spark.driver.host=sp-master-0 "
        "--conf spark.ui.enabled=false /tmp/squares.py 2>/tmp/submit.log; "
        "rc=$?; tail -n 20 /tmp/submit.log >&2; exit $rc"
    )
    r = api.http.post(
        f"/v1/cells/{master}/exec",
        json={"command": ["/bin/bash", "-c", submit], "timeout": 300},
        timeout=320,
    )
    r.raise_for_status()
    result = r.json()
    assert result["exit_code"] == 0, result["output"]
    assert f"SUM={EXPECTED}" in result["output"], result["output"]
    # The application ran on the cluster's executors, not in a local master.
    code, out = api.exec(
        master,
        [
            "/usr/bin/python3",
            "-c",
            "import json, urllib.request as u; s = json.load(u.urlopen("
            "'http://127.0.0.1:8080/json/')); print([a['name'] for a in s['completedapps']])",
        ],
    )
    assert "cellplane-squares" in out, out

    # Workers 2 -> 3 -> 1: the running master sees them come and go.
    c = resize(api, cid, 3)
    assert sorted(n["name"] for n in c["nodes"]) == [
        "sp-master-0",
        "sp-worker-0",
        "sp-worker-1",
        "sp-worker-2",
    ]
    wait_alive(api, master, {"sp-worker-0", "sp-worker-1", "sp-worker-2"})
    c = resize(api, cid, 1)
    assert sorted(n["name"] for n in c["nodes"]) == ["sp-master-0", "sp-worker-0"]
    before = wait_alive(api, master, {"sp-worker-0"})
    exported = api.get(f"/v1/clusters/{cid}/export")
    assert [g["instanceNum"] for g in exported["nodeGroups"]] == [1, 1]

    # The worker's container removed behind Cellplane's back: the node is healed and the new
    # worker process registers with the master again (a new worker id on the same host).
    worker = api.node_cells(c)["sp-worker-0"]
    engine.remove(api.container(worker), force=True)

    def healed(view: dict[str, Any]) -> bool:
        kinds = [(e["type"], e["node"]) for e in view["events"]]
        return ("node-healed", "sp-worker-0") in kinds and view["state"] == "RUNNING"

    api.wait(cid, healed, timeout=180)
    after = wait_alive(api, master, {"sp-worker-0"})
    assert after["sp-worker-0"] != before["sp-worker-0"]
    api.delete(cid)
