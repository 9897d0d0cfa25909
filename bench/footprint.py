"""Resident memory of the control plane (server + one agent) holding N running cells, idle.

Run `python bench/footprint.py --cells 100`; prints one JSON object on stdout (progress on stderr).

A fresh deployment (`python -m cellplane server` and `python -m cellplane agent` as separate
processes, with the agent's own podman engine); N cells (busybox `sleep 3600`, cpu 0.1,
memory_mb 16) created through the API by 8 client threads; the script waits until all are RUNNING,
then `--idle` seconds (10) with no client requests, then reads `VmRSS` from `/proc/<pid>/status`.

What is counted: the server process and the agent process, plus any descendant of either whose
executable is Python (none today). What is not counted: everything else below them, i.e. the
agent's `podman system service`, conmon, runc, aardvark-dns and the containers themselves (the
engine's cost, not Cellplane's); the listing of every descendant with its RSS is in `processes`.
VmRSS includes shared pages (the Python binary, shared libraries), so the sum slightly overstates
what the two processes cost together.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CpuMeter,
    deployment,
    emit,
    engine_remove_all,
    is_python,
    log,
    parallel_map,
    proc_name,
    proc_tree,
    rss_kb,
    status_field,
    user_client,
)

TARGET_RSS_MB = 150


def measure(root: int) -> tuple[int, list[dict]]:
    """(kB of VmRSS counted for the process tree under `root`, every process of the tree)."""
    counted_kb = 0
    procs = []
    for pid in proc_tree(root):
        counted = pid == root or is_python(pid)
        kb = rss_kb(pid)
        if counted:
            counted_kb += kb
        procs.append(
            {
                "pid": pid,
                "name": proc_name(pid)[:80],
                "rss_mb": round(kb / 1024, 1),
                "rss_anon_mb": round(status_field(pid, "RssAnon") / 1024, 1),
                "threads": status_field(pid, "Threads"),
                "counted": counted,
            }
        )
    return counted_kb, procs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    n = args.cells

    with deployment() as d:
        server_pid, agent_pid = d.server_proc.pid, d.agent_proc.pid
        time.sleep(2)
        empty_server, _ = measure(server_pid)
        empty_agent, _ = measure(agent_pid)
        log(f"no cells: server {empty_server / 1024:.1f} MB, agent {empty_agent / 1024:.1f} MB")

        counter = itertools.count()
        lock = threading.Lock()
        posted = [0]

        def worker(_: int) -> None:
            with user_client(d) as c:
                while (i := next(counter)) < n:
                    c.create_cell(
                        "default",
                        f"f{i:04d}",
                        "busybox",
                        cpu=0.1,
                        memory_mb=16,
                        command=["sleep", "3600"],
                    )
                    with lock:
                        posted[0] += 1

        parallel_map(worker, range(args.parallel), args.parallel)
        log(f"{n} cells accepted; waiting until all are RUNNING")
        with user_client(d) as c:
            deadline = time.monotonic() + 600
            while True:
                running = sum(1 for _ in c.iter_cells("default", state="RUNNING"))
                if running >= n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {running}/{n} RUNNING after 600 s")
                time.sleep(1)
        log(f"all {n} RUNNING; idle for {args.idle:g}s")
        meter = CpuMeter(d)
        meter.start()
        time.sleep(args.idle)
        idle_cpu = meter.stop()
        log(f"CPU seconds while idle: {idle_cpu}")

        server_kb, server_procs = measure(server_pid)
        agent_kb, agent_procs = measure(agent_pid)
        log(f"server {server_kb / 1024:.1f} MB, agent {agent_kb / 1024:.1f} MB")
        for p in server_procs + agent_procs:
            log(
                f"  {'counted ' if p['counted'] else 'excluded'} {p['pid']:>7} "
                f"{p['rss_mb']:7.1f} MB  {p['name']}"
            )
        removed = engine_remove_all(d)
        log(f"removed {removed} containers")

    emit(
        {
            "cells": n,
            "server_rss_mb": round(server_kb / 1024, 1),
            "agent_rss_mb": round(agent_kb / 1024, 1),
            "rss_mb": round((server_kb + agent_kb) / 1024, 1),
            "target_rss_mb": TARGET_RSS_MB,
            "empty_server_rss_mb": round(empty_server / 1024, 1),
            "empty_agent_rss_mb": round(empty_agent / 1024, 1),
            "idle_cpu_seconds": idle_cpu,
            "idle_seconds": args.idle,
            "counted": "server and agent processes (+ Python descendants); not podman, conmon, "
            "runc, aardvark-dns or containers",
            "processes": {
                "server": [p for p in server_procs if p["counted"]],
                "agent": [p for p in agent_procs if p["counted"]],
                "excluded": len([p for p in server_procs + agent_procs if not p["counted"]]),
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
