"""`agent.vxlan` on real kernels: two namespace "hosts" on an underlay, one network across them.

The test makes two network namespaces joined by a veth pair (the underlay, 10.251.0.1 and .2),
runs `vxlan.ensure` inside each (as an agent started with `nsenter --net` does), gives each
host's bridge an address on the overlay and pings across (busybox's ping); a "cell" (a third
namespace) on a network of another VNI on the second host is not reachable from the first. Addresses are only those of the namespaces the test
made; everything is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SRC = str(Path(__file__).resolve().parents[3] / "src")


def _sh(*cmd: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    full = ["nsenter", f"--net=/run/netns/{netns}", *cmd] if netns else list(cmd)
    return subprocess.run(full, capture_output=True, text=True, timeout=60, check=False)


def _ok(*cmd: str, netns: str | None = None) -> None:
    r = _sh(*cmd, netns=netns)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"


def _ensure(netns: str, vni: int, local: str, peers: list[str]) -> None:
    code = (
        "import sys; from cellplane.agent import vxlan; "
        f"vxlan.ensure({vni}, {local!r}, {peers!r}, mtu=1500)"
    )
    r = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
        check=False,
    )
    assert r.returncode == 0, r.stderr


def _reaches(netns: str, address: str, tries: int = 5) -> bool:
    return any(
        _sh("busybox", "ping", "-c", "1", "-W", "1", address, netns=netns).returncode == 0
        for _ in range(tries)
    )


def _cell_on(host: str, cell: str, bridge: str, address: str) -> None:
    """A namespace `cell` with an eth0 on `host`'s `bridge`, at `address`."""
    _sh("ip", "netns", "add", cell)
    veth = f"cpw{cell[5:11]}{cell[-1]}"
    _ok(
        "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", cell, netns=host
    )
    _ok("ip", "link", "set", veth, "master", bridge, "up", netns=host)
    _ok("ip", "addr", "add", address, "dev", "eth0", netns=cell)
    _ok("ip", "link", "set", "eth0", "up", netns=cell)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("busybox") is None:
        pytest.skip("network namespaces need root; the pings, busybox")
    tag = uuid.uuid4().hex[:6]
    a, b, cell = f"cpov-{tag}-a", f"cpov-{tag}-b", f"cpov-{tag}-c"
    va, vb = f"cpv{tag}a", f"cpv{tag}b"
    try:
        _ok("ip", "netns", "add", cell)
        _ok("ip", "netns", "add", a)
        _ok("ip", "netns", "add", b)
        _ok("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        _ok("ip", "link", "set", va, "netns", a)
        _ok("ip", "link", "set", vb, "netns", b)
        for ns, dev, addr in ((a, va, "10.251.0.1/24"), (b, vb, "10.251.0.2/24")):
            _ok("ip", "addr", "add", addr, "dev", dev, netns=ns)
            _ok("ip", "link", "set", dev, "up", netns=ns)
            _ok("ip", "link", "set", "lo", "up", netns=ns)
        yield a, b
    finally:
        for ns in (a, b, cell, f"cpov-{tag}-x", f"cpov-{tag}-y"):
            _sh("ip", "netns", "del", ns)


def test_a_network_spans_two_hosts_and_another_vni_stays_apart(
    two_hosts: tuple[str, str],
) -> None:
    a, b = two_hosts
    cell = a.removesuffix("-a") + "-c"
    _ensure(a, 4200, "10.251.0.1", ["10.251.0.2"])
    _ensure(b, 4200, "10.251.0.2", ["10.251.0.1", "10.251.0.2"])  # itself is left out
    _ensure(b, 4201, "10.251.0.2", ["10.251.0.1"])  # another project's network on host b
    _ensure(a, 4200, "10.251.0.1", ["10.251.0.2"])  # again: idempotent
    # Cells: a namespace of its own on a host's bridge. One of the project on each host (VNI
    # 4200), and another project's on host b (VNI 4201). The bridges themselves share one MAC
    # per VNI (a cell's gateway is on its own host), so cells, not bridges, are what ping.
    cell_a, cell_b = a.removesuffix("-a") + "-x", a.removesuffix("-a") + "-y"
    _cell_on(a, cell_a, "cpbr4200", "10.252.0.11/24")
    _cell_on(b, cell_b, "cpbr4200", "10.252.0.12/24")
    _cell_on(b, cell, "cpbr4201", "10.252.0.3/24")
    fdb = _sh("bridge", "fdb", "show", "dev", "cpvx4200", netns=b).stdout
    assert "00:00:00:00:00:00 dst 10.251.0.1" in fdb and "dst 10.251.0.2" not in fdb
    mtu = _sh("ip", "-o", "link", "show", "cpvx4200", netns=a).stdout
    assert "mtu 1450" in mtu and "master cpbr4200" in mtu
    assert _reaches(cell_a, "10.252.0.12")  # across hosts, over VXLAN 4200
    assert not _reaches(cell_a, "10.252.0.3", tries=2)  # VNI 4201: no path from host a
    assert not _reaches(cell, "10.252.0.11", tries=2)  # nor the other way
    # The peer goes away: its flood entry does too (learned unicast entries age out).
    _ensure(a, 4200, "10.251.0.1", [])
    fdb_a = _sh("bridge", "fdb", "show", "dev", "cpvx4200", netns=a).stdout
    assert "00:00:00:00:00:00 dst 10.251.0.2" not in fdb_a
