"""PostgreSQL HA: Patroni (Debian's patroni + postgresql-15) on a 3-node etcd, 3 PostgreSQL nodes.

A client in the project (psql in an etcd node's cell, libpq's multi-host form with
`target_session_attrs=read-write`: it connects to whichever node is the primary) writes a row; the
leader's cell is killed and kept down; a replica is promoted and the reconnecting client writes
again and reads the first row; the cluster view names the new leader, whose endpoint takes a
write; the old leader comes back and rejoins as a streaming replica.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group

pytestmark = pytest.mark.integration

CONFIG = "/etc/cellplane/patroni/patroni.yml"
NODES = ("pg-postgres-0", "pg-postgres-1", "pg-postgres-2")


def _members(api: Api, cell: str) -> dict[str, dict[str, Any]]:
    code, out = api.sh(cell, f"patronictl -c {CONFIG} list -f json 2>/dev/null")
    assert code == 0, out
    return {m["Member"]: m for m in json.loads(out)}


def _leader(c: dict[str, Any]) -> str | None:
    leader = c.get("leaders", {}).get("patroni")
    return str(leader["node"]) if leader else None


def _psql(api: Api, client: str, password: str, sql: str) -> tuple[int, str]:
    dsn = (
        f"host={','.join(NODES)} port=5432 user=postgres dbname=postgres "
        "target_session_attrs=read-write connect_timeout=3"
    )
    return api.sh(
        client,
        f"PGPASSWORD={password} psql {shlex.quote(dsn)} -v ON_ERROR_STOP=1 -Atc {shlex.quote(sql)}",
    )


def test_patroni_failover_and_rejoin(api: Api, engine: PodmanDriver) -> None:
    need("/usr/bin/patroni", "/usr/lib/postgresql/15/bin/postgres", "/usr/bin/etcd")
    spec = {
        "nodeGroups": [
            small_group("etcd", ["etcd"], 3),
            small_group("postgres", ["patroni"], 3),
        ]
    }
    cid = api.create("pg", "postgres-ha", spec)
    c = api.settled(cid, timeout=300)
    assert c["state"] == "RUNNING", c["message"]
    cells = api.node_cells(c)
    client = cells["pg-etcd-0"]
    assert c["endpoints"]["patroni"]["postgres"] == [f"{n}:5432" for n in NODES]

    # One leader, two replicas streaming (the readiness probes said so; Patroni agrees).
    members = _members(api, cells[NODES[0]])
    leaders = [n for n, m in members.items() if m["Role"] == "Leader"]
    assert len(leaders) == 1, members
    assert sorted(members) == sorted(NODES), members
    old = leaders[0]
    # The executor's leader pass (every 5 s) finds it too: the view names it.
    c = api.wait(cid, lambda c: _leader(c) == old, 30)
    assert c["leaders"]["patroni"]["endpoints"]["postgres"] == f"{old}:5432"
    # The password is the cluster's: read where a project member can (the node's config).
    code, password = api.sh(
        cells[old],
        f'python3 -c \'import yaml; print(yaml.safe_load(open("{CONFIG}"))'
        f'["postgresql"]["authentication"]["superuser"]["password"])\'',
    )
    password = password.strip()
    assert code == 0 and len(password) == 32, password

    code, out = _psql(
        api, client, password, "create table t (v text); insert into t values ('before')"
    )
    assert code == 0, out

    # The leader dies and stays down (killed, then stopped so nothing restarts it).
    engine.kill(api.container(cells[old]))
    r = api.post(f"/v1/cells/{cells[old]}/stop", {"timeout": 1})
    assert r.status_code == 202, r.text

    # A replica is promoted once the leader key expires (ttl 20 s); the client reconnects.
    deadline = time.monotonic() + 120
    code, out = 1, ""
    while time.monotonic() < deadline:
        code, out = _psql(api, client, password, "insert into t values ('after')")
        if code == 0:
            break
        time.sleep(1)
    assert code == 0, f"no primary took the write: {out}"
    code, out = _psql(api, client, password, "select v from t order by v")
    assert (code, out.split()) == (0, ["after", "before"]), out
    survivor = next(cells[n] for n in NODES if n != old)
    members = _members(api, survivor)
    new = [n for n, m in members.items() if m["Role"] == "Leader"]
    assert len(new) == 1 and new[0] != old, members
    # Cellplane follows the failover: the view names the new leader; its endpoint takes writes.
    c = api.wait(cid, lambda c: _leader(c) == new[0], 60)
    endpoint = c["leaders"]["patroni"]["endpoints"]["postgres"]
    host, port = endpoint.split(":")
    code, out = api.sh(
        client,
        f"PGPASSWORD={password} psql -h {host} -p {port} -U postgres -qAtc "
        "\"insert into t values ('endpoint') returning v\"",
    )
    assert (code, out.strip()) == (0, "endpoint"), out

    # The old leader comes back (its cell started; the cluster resumed or healed): Patroni
    # rewinds it and it follows the new leader, which the readiness probe checks.
    r = api.post(f"/v1/cells/{cells[old]}/start")
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 240
    resumed = False
    while time.monotonic() < deadline:
        c = api.get(f"/v1/clusters/{cid}")
        settled = c["task"]["state"] in ("COMPLETED", "ERROR")
        ready = all(n["state"] == "SERVICE_READY" for n in c["nodes"])
        if settled and c["state"] == "RUNNING" and ready:
            break
        if settled and c["state"] == "DEGRADED" and not resumed:
            resumed = api.post(f"/v1/clusters/{cid}/resume").status_code == 202
        time.sleep(1)
    assert c["state"] == "RUNNING", c
    cells = api.node_cells(c)
    members = _members(api, cells[old])
    assert members[old]["Role"] == "Replica" and members[old]["State"] in (
        "running",
        "streaming",
    ), members
    code, out = api.sh(
        cells[old], "psql -h /tmp -U postgres -Atc 'select pg_is_in_recovery(), count(*) from t'"
    )
    assert (code, out.strip()) == (0, "t|3"), out
    api.delete(cid)
