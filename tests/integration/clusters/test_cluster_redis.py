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
    # Usually within ~10 s (down-after 5 s + election). Up to ~70 s when a
    # sentinel's reconnect lookup of the dead primary's name lands while
    # aardvark-dns 1.4 reloads (that lookup hangs ~30 s, measured) and the
    # blocked event loop puts the sentinel in TILT mode for 30 s.
    engine.kill(api.container(primary))
    r = api.post(f"/v1/cells/{primary}/stop", {"timeout": 1})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    master = "rd-primary-0"
    while time.monotonic() < deadline and master.startswith("rd-primary"):
        out = api.sh(sentinel, "redis-cli -p 26379 sentinel get-master-addr-by-name rd")[1]
        master = out.split()[0] if out.split() else master
        time.sleep(0.5)
    if not master.startswith("rd-replica"):
        logs = {
            name: b"".join(engine.logs(api.container(cells[name]), tail=40)).decode()
            for name in ("rd-sentinel-0", "rd-sentinel-1", "rd-sentinel-2")
        }
        pytest.fail(f"no failover, the sentinels still name {master}: {logs}")
    new_primary = cells[master]
    deadline = time.monotonic() + 20
    out = ""
    while time.monotonic() < deadline and out.strip() != "OK":
        out = api.sh(new_primary, "redis-cli set k2 after")[1]
        time.sleep(0.5)
    assert out.strip() == "OK", out
    assert api.sh(new_primary, "redis-cli get k")[1].strip() == "hello"
    api.delete(cid)
