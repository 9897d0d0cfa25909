"""RabbitMQ (3 nodes, a quorum queue across the loss of a node) and MariaDB Galera (3 nodes,
synchronous replication, a lost node recreated on its volume rejoins by IST or SST) from Debian's
packages. The clients run inside the nodes (their host image): pika and the mariadb client."""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group

pytestmark = pytest.mark.integration

MESSAGES = 300
# The CLI tools as root with the cluster's cookie (/usr/sbin's wrappers switch to the rabbitmq user).
RMQ = "HOME=/root /usr/lib/rabbitmq/bin/"

# Publishes with publisher confirms: basic_publish returns only once the queue's quorum has the
# message (pika raises on a nack), so every message counted here is acknowledged by the broker.
PUBLISH = """
import sys, pika
conn = pika.BlockingConnection(pika.ConnectionParameters("localhost"))
ch = conn.channel()
ch.queue_declare("orders", durable=True, arguments={"x-queue-type": "quorum"})
ch.confirm_delivery()
for i in range(int(sys.argv[1])):
    ch.basic_publish("", "orders", str(i).encode(), pika.BasicProperties(delivery_mode=2),
                     mandatory=True)
print("confirmed", sys.argv[1])
conn.close()
"""

# Right after the leader's node dies the survivors answer "nodedown" until they have elected a
# new queue leader (a few seconds; a passive declare may already answer by then). A client
# retries, as a real one reconnects: each attempt takes every message without acknowledging it
# and acknowledges them all at the end, so an attempt cut short by "nodedown" leaves every
# message in the queue (unacknowledged messages go back when the connection closes).
CONSUME = """
import sys, time, pika
deadline = time.monotonic() + 45  # inside the exec's own 60 s
while True:
    try:
        conn = pika.BlockingConnection(pika.ConnectionParameters("localhost"))
        ch = conn.channel()
        got, last = [], None
        while True:
            method, _props, body = ch.basic_get("orders")
            if method is None:
                break
            got.append(int(body))
            last = method.delivery_tag
        if last is not None:
            ch.basic_ack(last, multiple=True)
        conn.close()
        break
    except pika.exceptions.AMQPError as e:
        if time.monotonic() > deadline:
            sys.exit(f"the queue never answered: {e!r}")
        time.sleep(0.5)
print(len(got), len(set(got)), min(got, default=-1), max(got, default=-1))
"""


def _python(api: Api, cell: str, script: str, *args: str) -> tuple[int, str]:
    return api.sh(cell, f"python3 -c {shlex.quote(script)} {' '.join(args)}")


def test_rabbitmq_quorum_queue_loses_no_confirmed_message(api: Api, engine: PodmanDriver) -> None:
    need("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/lib/python3/dist-packages/pika")
    cid = api.create("mq", "rabbitmq", {"nodeGroups": [small_group("rabbit", ["rabbitmq"], 3)]})
    c = api.settled(cid, timeout=180)
    assert c["state"] == "RUNNING", c["message"]
    cells = api.node_cells(c)
    seed, other = cells["mq-rabbit-0"], cells["mq-rabbit-1"]
    code, out = api.sh(seed, RMQ + "rabbitmq-diagnostics -q cluster_status --formatter json")
    assert code == 0, out
    for i in range(3):
        assert f"rabbit@mq-rabbit-{i}" in out, out

    # The queue is declared on the seed, which leads it; its members are all three nodes.
    code, out = _python(api, seed, PUBLISH, str(MESSAGES))
    assert (code, out.strip()) == (0, f"confirmed {MESSAGES}"), out
    code, out = api.sh(seed, RMQ + "rabbitmq-queues -q quorum_status orders --formatter json")
    assert code == 0 and out.count('"Raft State"') == 3, out

    # The leader's node dies (killed, and kept down): the other two elect a new leader.
    engine.kill(api.container(seed))
    r = api.post(f"/v1/cells/{seed}/stop", {"timeout": 1})
    assert r.status_code == 202, r.text
    code, out = _python(api, other, CONSUME)
    assert code == 0, out
    assert out.split() == [str(MESSAGES), str(MESSAGES), "0", str(MESSAGES - 1)], out

    # The seed starts again with its data and rejoins: its own readiness check (every member
    # running in cluster_status) passes again.
    r = api.post(f"/v1/cells/{seed}/start")
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    code, out = 1, ""
    ready = ["python3", "/etc/cellplane/rabbitmq/ready.py"]
    while time.monotonic() < deadline and code != 0:
        r = api.post(f"/v1/cells/{seed}/exec", {"command": ready})  # 409 until it runs
        if r.status_code == 200:
            code, out = r.json()["exit_code"], r.json()["output"]
        time.sleep(1)
    assert code == 0, out
    api.delete(cid)


SQL = "mariadb --defaults-file=/etc/cellplane/galera/my.cnf -N -B -e "


def _sql(api: Api, cell: str, statement: str) -> str:
    code, out = api.sh(cell, SQL + shlex.quote(statement))
    assert code == 0, out
    return out.strip()


def test_galera_replicates_and_a_lost_node_rejoins_with_the_data(
    api: Api, engine: PodmanDriver
) -> None:
    need("/usr/sbin/mariadbd", "/usr/lib/galera/libgalera_smm.so")
    cid = api.create("gl", "galera", {"nodeGroups": [small_group("galera", ["galera"], 3)]})
    c = api.settled(cid, timeout=180)
    assert c["state"] == "RUNNING", c["message"]
    cells = api.node_cells(c)
    first, victim = cells["gl-galera-0"], cells["gl-galera-2"]
    _sql(api, first, "CREATE DATABASE shop; CREATE TABLE shop.k (id INT PRIMARY KEY, v TEXT)")
    _sql(api, first, "INSERT INTO shop.k VALUES (1, 'before')")
    # wsrep_sync_wait: the read waits until the node applied everything committed before it.
    for name in ("gl-galera-1", "gl-galera-2"):
        got = _sql(api, cells[name], "SET wsrep_sync_wait=1; SELECT v FROM shop.k WHERE id=1")
        assert got == "before", name

    # Node 3's container is removed behind Cellplane's back; a write lands while it is gone.
    engine.remove(api.container(victim), force=True)
    _sql(api, first, "INSERT INTO shop.k VALUES (2, 'while-away')")

    def healed(view: dict[str, Any]) -> bool:
        kinds = [(e["type"], e["node"]) for e in view["events"]]
        return ("node-healed", "gl-galera-2") in kinds and view["state"] == "RUNNING"

    api.wait(cid, healed, timeout=180)
    got = _sql(api, victim, "SET wsrep_sync_wait=1; SELECT GROUP_CONCAT(v ORDER BY id) FROM shop.k")
    assert got == "before,while-away", got
    size = _sql(api, victim, "SHOW STATUS LIKE 'wsrep_cluster_size'")
    assert size.split() == ["wsrep_cluster_size", "3"], size
    api.delete(cid)
