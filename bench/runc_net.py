"""The runc driver's networking: attach and detach time per cell, against iproute2 (as root).

Run `python bench/runc_net.py --cells 100`; prints one JSON object on stdout.

One network (`RuncNetworks` in a temporary run dir, its own bridge, rules and resolver), then N
cells one after the other: `attach` (namespace bound under the run dir, veth pair, address,
route, resolver line and SIGHUP) timed, then all N `detach` timed. Same run, same host, the
baseline: what a shell script would do for one cell with iproute2 (`ip netns add`, `ip link add
... veth peer ... netns`, `ip link set ... master ... up`, `ip -n ... addr add / link set up /
route add`; then `ip netns del`), N times. Both report medians in milliseconds; the pyroute2
import cost is reported once. Everything made is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

t0 = time.perf_counter()
import pyroute2  # noqa: E402,F401  (timed: the driver pays it once per agent)

IMPORT_MS = (time.perf_counter() - t0) * 1000

from cellplane.drivers.base import NetworkSpec  # noqa: E402
from cellplane.drivers.runc_net import RuncNetworks  # noqa: E402


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _bench_driver(n: int, run_dir: Path, tag: str) -> tuple[list[float], list[float]]:
    nets = RuncNetworks(run_dir)
    name = f"bench-{tag}"
    attach: list[float] = []
    detach: list[float] = []
    ids = [f"bench{tag}{i}" for i in range(n)]
    try:
        nets.ensure_network(NetworkSpec(name=name))
        for cid in ids:
            start = time.perf_counter()
            nets.attach(cid, name, None, cid, [])
            attach.append(_ms(start))
        for cid in ids:
            start = time.perf_counter()
            nets.detach(cid)
            detach.append(_ms(start))
    finally:
        for cid in ids:
            nets.detach(cid)
        nets.remove_network(name)
        nets.close()
    return attach, detach


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _bench_iproute2(n: int, tag: str) -> tuple[list[float], list[float]]:
    bridge = f"cpnb{tag[:8]}"
    attach: list[float] = []
    detach: list[float] = []
    names = [f"cpb{tag[:6]}{i}" for i in range(n)]
    _ip("link", "add", bridge, "type", "bridge")
    try:
        _ip("addr", "add", "10.254.250.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for i, ns in enumerate(names):
            start = time.perf_counter()
            _ip("netns", "add", ns)
            _ip("link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", ns, "master", bridge, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"10.254.250.{i + 2}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", "10.254.250.1")
            attach.append(_ms(start))
        for ns in names:
            start = time.perf_counter()
            _ip("netns", "del", ns)
            detach.append(_ms(start))
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    return attach, detach


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (namespaces, bridges, iptables)", file=sys.stderr)
        return 2
    if not 1 <= args.cells <= 250:
        print("--cells: 1 to 250", file=sys.stderr)
        return 2
    tag = uuid.uuid4().hex[:8]
    run_dir = Path(tempfile.mkdtemp(prefix="cp-runcnet-bench-"))
    try:
        d_attach, d_detach = _bench_driver(args.cells, run_dir, tag)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    b_attach, b_detach = _bench_iproute2(args.cells, tag)
    result = {
        "cells": args.cells,
        "pyroute2_import_ms": round(IMPORT_MS, 1),
        "attach_p50_ms": round(statistics.median(d_attach), 2),
        "attach_max_ms": round(max(d_attach), 2),
        "detach_p50_ms": round(statistics.median(d_detach), 2),
        "detach_max_ms": round(max(d_detach), 2),
        "baseline_iproute2_attach_p50_ms": round(statistics.median(b_attach), 2),
        "baseline_iproute2_detach_p50_ms": round(statistics.median(b_detach), 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
