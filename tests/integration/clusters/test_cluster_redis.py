"""Redis primary + 2 replicas + 3 sentinels on Debian's redis packages: replication and failover."""

from __future__ import annotations

import time

import pytest

from cellplane.drivers.podman import PodmanDriver

from .conftest import Api, need, small_group

pytestmark = pytest.mark.integration


def test_redis_sentinel_failover(api: Api, engine: PodmanDriver) -> None:
    need("/usr/bin/redis-server", "/usr/bin/redis-sentinel")
    spec = {
        "nodeGroups": [
            small_group("primary", ["redis_primary"], 1),
            small_group("replica", ["redis_replica"], 2),
            small_group("sentinel", ["redis_sentinel"], 3),
        ]
    }
    cid = api.create("rd", "redis", spec)
    c = api.settled(cid)
    assert c["state"] == "RUNNING", c["message"]
    cells = api.node_cells(c)
    primary, sentinel = cells["rd-primary-0"], cells["rd-sentinel-0"]

    _code, out = api.sh(primary, "redis-cli set k hello")
    assert out.strip() == "OK", out
    for name in ("rd-replica-0", "rd-replica-1"):
        deadline = time.monotonic() + 10
        got = ""
        while time.monotonic() < deadline and got != "hello":
            got = api.sh(cells[name], "redis-cli get k")[1].strip()
            time.sleep(0.2)
        assert got == "hello", name

    # The primary dies (killed, and kept down): the sentinels promote a replica.
    engine.kill(api.container(primary))
    r = api.post(f"/v1/cells/{primary}/stop", {"timeout": 1})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    master = "rd-primary-0"
    while time.monotonic() < deadline and master.startswith("rd-primary"):
        out = api.sh(sentinel, "redis-cli -p 26379 sentinel get-master-addr-by-name rd")[1]
        master = out.split()[0] if out.split() else master
        time.sleep(0.5)
    assert master.startswith("rd-replica"), master
    new_primary = cells[master]
    deadline = time.monotonic() + 20
    out = ""
    while time.monotonic() < deadline and out.strip() != "OK":
        out = api.sh(new_primary, "redis-cli set k2 after")[1]
        time.sleep(0.5)
    assert out.strip() == "OK", out
    assert api.sh(new_primary, "redis-cli get k")[1].strip() == "hello"
    api.delete(cid)
