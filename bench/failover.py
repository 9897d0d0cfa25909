"""Failover: a host is lost -> its cells RUNNING elsewhere; it comes back -> no cell runs twice.

Run (as root: dev hosts are network namespaces) `python bench/failover.py --hosts 3 --cells 30`;
prints one JSON object on stdout (progress on stderr).

A real deployment: `cellplane server` with TLS on a private underlay bridge and `--hosts` dev hosts
(`cellplane.devhosts`: a namespace, an agent and a podman engine each), default settings
(heartbeat every 2 s, SUSPECT after 6 s, DOWN after 10 s). `--cells` cells with restart policy
`always` are spread over the hosts and awaited RUNNING. Then the host running the most cells is
cut off: its only link to the underlay goes down (`--loss link`; its agent and containers keep
running, unreachable), or its agent is killed and its containers frozen (`--loss kill`:
SIGKILL, `podman pause`). The clock starts there and the server's API is polled every 0.1 s:

- `detect_s`: until the host shows DOWN;
- `recover_s`: until every cell that was on it is RUNNING on another host;
- `lost`: cells of the lost host not RUNNING elsewhere 120 s after the loss;
- the host then comes back (link up; or the agent restarted, its containers still frozen) and
  `fence_s` is the time until it is READY again, which it is only after its agent removed the
  containers of the cells that moved away;
- `duplicates`: cells with more than one running container over all hosts (each host's own
  podman asked), counted when the host is READY again and once more 5 s later.

Baseline, same run: `down_threshold_s`, the configured DOWN threshold (no failover can detect a
loss before it); `recover_s - detect_s` is the rescheduling itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, log

from cellplane import devhosts
from cellplane.client import Client
from cellplane.devhosts import hosts as devhosts_hosts
from cellplane.settings import ServerSettings
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment

UNDERLAY = devhosts.Underlay(bridge="cpb0", subnet="10.79.0.0/24", namespace_prefix="cpb-")
SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
TARGET_RECOVER_S = 15.0
POLL_S = 0.1
LOST_AFTER_S = 120.0


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)


def engine(data_dir: Path, name: str, *args: str) -> str:
    host = devhosts.get_host(data_dir, name)
    cmd = devhosts_hosts._engine_command(host, *args)  # the host's own podman, in its namespaces
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout


def running_per_cell(data_dir: Path, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        out = engine(data_dir, name, "ps", "--format", "json", "--filter", "status=running")
        for c in json.loads(out or "[]"):
            cell = (c.get("Labels") or {}).get("cellplane.cell")
            if cell:
                counts[cell] = counts.get(cell, 0) + 1
    return counts


def host_rows(client: Client) -> dict[str, dict[str, Any]]:
    return {h["name"]: h for h in client.list_hosts()["items"]}


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    archive = build_busybox_archive(work)
    gateway = devhosts.ensure_underlay(UNDERLAY)
    d = Deployment(tls=True, listen_host=gateway)
    client: Client | None = None
    names = [f"b{i + 1}" for i in range(args.hosts)]
    try:
        d.start_server()
        client = d.client()
        client.upload_image("busybox", archive)
        token = d.join_file.read_text().strip()
        for i, name in enumerate(names):
            devhosts.add_host(
                name,
                data_dir=d.data_dir,
                server_url=d.url,
                join_token=token,
                ca_file=d.ca_file,
                zone=f"z{i + 1}",
                underlay=UNDERLAY,
            )
        c = client
        until(
            lambda: (
                all(r["state"] == "READY" for r in host_rows(c).values())
                and len(host_rows(c)) == len(names)
            ),
            120,
            "the hosts READY",
        )
        log(f"{len(names)} hosts READY; creating {args.cells} cells")
        ids = []
        for i in range(args.cells):
            task = c.create_cell(
                "default",
                f"f{i}-{uuid.uuid4().hex[:4]}",
                "busybox",
                command=SLEEP,
                restart={"policy": "always"},
                **SMALL,
            )
            ids.append(task["entity"]["id"])

        def cells() -> dict[str, dict[str, Any]]:
            return {x["id"]: x for x in c.iter_cells("default")}

        until(
            lambda: all(x["state"] == "RUNNING" for x in cells().values()),
            300,
            "every cell RUNNING",
        )
        by_host: dict[str, list[str]] = {}
        for cid, cell in cells().items():
            by_host.setdefault(cell["host"], []).append(cid)
        rows = host_rows(c)
        victim_id = max(by_host, key=lambda h: (len(by_host[h]), h))
        victim = next(n for n, r in rows.items() if r["id"] == victim_id)
        moving = set(by_host[victim_id])
        log(f"losing {victim} ({len(moving)} cells) by {args.loss}")
        host = devhosts.get_host(d.data_dir, victim)
        link = ["nsenter", f"--net={host.netns_path}", "ip", "link", "set", "eth0"]
        t0 = time.monotonic()
        if args.loss == "link":
            subprocess.run([*link, "down"], check=True)
        else:
            devhosts.kill_agent(d.data_dir, victim)
            ids_on = engine(d.data_dir, victim, "ps", "-q").split()
            if ids_on:
                engine(d.data_dir, victim, "pause", *ids_on)
        until(lambda: host_rows(c)[victim]["state"] == "DOWN", 120, f"{victim} DOWN")
        detect_s = time.monotonic() - t0
        log(f"DOWN after {detect_s:.2f} s")

        def recovered() -> set[str]:
            now = cells()
            return {
                cid
                for cid in moving
                if now[cid]["state"] == "RUNNING" and now[cid]["host"] not in (None, victim_id)
            }

        recover_s: float | None = None
        while time.monotonic() - t0 < LOST_AFTER_S:
            if recovered() == moving:
                recover_s = time.monotonic() - t0
                break
            time.sleep(POLL_S)
        lost = len(moving - recovered())
        log(f"recovered after {recover_s} s, lost {lost}")
        back = time.monotonic()
        if args.loss == "link":
            subprocess.run([*link, "up"], check=True)
        else:
            devhosts.start_agent(
                d.data_dir, victim, server_url=d.url, join_token=token, ca_file=d.ca_file
            )
        until(lambda: host_rows(c)[victim]["state"] == "READY", 120, f"{victim} READY again")
        fence_s = time.monotonic() - back
        dup_at_ready = sum(1 for n in running_per_cell(d.data_dir, names).values() if n > 1)
        time.sleep(5)
        dup_later = sum(1 for n in running_per_cell(d.data_dir, names).values() if n > 1)
        log(f"READY again after {fence_s:.2f} s; duplicates {dup_at_ready}/{dup_later}")
        return {
            "bench": "failover",
            "hosts": args.hosts,
            "cells": args.cells,
            "loss": args.loss,
            "moved_cells": len(moving),
            "detect_s": round(detect_s, 2),
            "recover_s": None if recover_s is None else round(recover_s, 2),
            "lost": lost,
            "duplicates": max(dup_at_ready, dup_later),
            "fence_s": round(fence_s, 2),
            "down_threshold_s": ServerSettings().heartbeat_down_s,
            "target_recover_s": TARGET_RECOVER_S,
            "ok": recover_s is not None
            and recover_s <= TARGET_RECOVER_S
            and lost == 0
            and max(dup_at_ready, dup_later) == 0,
        }
    finally:
        try:
            devhosts.remove_all(d.data_dir)
        finally:
            devhosts.net.remove_bridge(UNDERLAY)
            if client is not None:
                client.close()
            d.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--cells", type=int, default=30)
    p.add_argument("--loss", choices=("link", "kill"), default="link")
    args = p.parse_args()
    if args.hosts < 2 or args.cells < 1:
        p.error("needs --hosts >= 2 and --cells >= 1")
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as work:
        emit(run(args, Path(work)))


if __name__ == "__main__":
    main()
