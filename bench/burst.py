"""Burst: N small cells created through the API by P client threads, until all are RUNNING.

Run `python bench/burst.py --cells 1000 --parallel 8` (`--cells 200` for a quick check); prints one
JSON object on stdout (progress on stderr).

Cells: cpu 0.01, memory_mb 16, `sleep 3600`, on the one host of a fresh deployment (server + agent
+ the agent's podman engine). One warm-up cell first (image loaded, not timed), then the clock
starts before the first `POST /v1/projects/{project}/cells`; P threads each POST their share.
The burst ends when the last cell is RUNNING: after the POSTs have all returned the script lists
`GET /v1/projects/{project}/cells?state=RUNNING` every `--poll` seconds (5; each poll costs the
server ~0.2 s of CPU at 1000 cells, so it is kept rare) until N are RUNNING. `seconds` is taken from the server's own record of the last
RUNNING transition (the latest `updated_at` of the cells, written when the agent's report arrived;
same machine clock), so it does not carry the poll interval; `seconds_observed` is when the poll saw
it.

Projects: each project is one bridge network on the host, and podman gives a network a /24, so
one project holds at most 253 running cells on a host (the 254th start fails with "IPAM error:
failed to find free IP in range"). The cells are therefore spread round-robin over
`--projects` projects (default ceil(N / 250), created before the clock starts); `--projects 1`
shows the limit.

Baseline, same run, same engine, before the cells: N identical containers (same image, command,
limits, spread over the same number of bridge networks) created+started by P threads directly
through the docker SDK (`POST /containers/create` + `POST /containers/{id}/start`); time until the
last start returned. They are removed (P parallel removes, not timed) before the cells' burst.

Clean-up: the agent is stopped, then the cells' containers are force-removed directly on the engine
with P parallel removes, and the deployment is closed (which removes anything left).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Baseline,
    CpuMeter,
    deployment,
    emit,
    engine_remove_all,
    log,
    parallel_map,
    py_spy,
)

TARGET_SECONDS = 60
TARGET_RATIO = 1.3
CPU = 0.01
MEMORY_MB = 16
COMMAND = ["sleep", "3600"]
PER_NETWORK = 250
STALL_S = 90.0


def run_baseline(base: Baseline, n: int, parallel: int) -> float:
    counter = itertools.count()
    done = [0]
    lock = threading.Lock()

    def worker(_: int) -> None:
        while (i := next(counter)) < n:
            base.create_start(f"bench-{i:05d}", i)
            with lock:
                done[0] += 1
                if done[0] % 200 == 0:
                    log(f"baseline: {done[0]}/{n} started")

    t0 = time.perf_counter()
    parallel_map(worker, range(parallel), parallel)
    return time.perf_counter() - t0


def _running(c, project: str):
    cursor = None
    while True:
        page = c.list_cells(project, state="RUNNING", limit=1000, cursor=cursor)
        yield from page["items"]
        if not (cursor := page.get("next_cursor")):
            return


def count_running(c, projects: list[str]) -> tuple[int, float]:
    """(number of RUNNING burst cells, latest updated_at of them as unix time)."""
    n, latest = 0, 0.0
    for project in projects:
        for cell in _running(c, project):
            if cell["name"] == "warm":
                continue
            n += 1
            latest = max(latest, datetime.fromisoformat(cell["updated_at"]).timestamp())
    return n, latest


def stuck_report(c, projects: list[str]) -> str:
    states: dict[str, int] = {}
    messages: dict[str, int] = {}
    for project in projects:
        for cell in c.iter_cells(project):
            states[cell["state"]] = states.get(cell["state"], 0) + 1
            if cell["state"] != "RUNNING" and cell.get("message"):
                msg = str(cell["message"])[:160]
                messages[msg] = messages.get(msg, 0) + 1
    return f"states {states}; messages {messages}"


def run_cells(
    d, n: int, parallel: int, poll: float, cpu: float, projects: list[str]
) -> dict[str, float]:
    counter = itertools.count()
    posted = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(_: int) -> None:
        with d.client(timeout=60) as c:
            while (i := next(counter)) < n:
                try:
                    c.create_cell(
                        projects[i % len(projects)],
                        f"b{i:05d}",
                        "busybox",
                        cpu=cpu,
                        memory_mb=MEMORY_MB,
                        command=COMMAND,
                    )
                except Exception as e:
                    errors.append(e)
                    return
                with lock:
                    posted[0] += 1
                    if posted[0] % 200 == 0:
                        log(f"cells: {posted[0]}/{n} accepted")

    t0_wall = time.time()
    t0 = time.perf_counter()
    parallel_map(worker, range(parallel), parallel)
    t_posted = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, first: {errors[0]}")
    log(f"cells: all {n} accepted in {t_posted:.1f}s; polling for RUNNING every {poll}s")
    with d.client(timeout=120) as c:
        last_log, best, best_at = 0.0, -1, time.monotonic()
        while True:
            running, latest = count_running(c, projects)
            now = time.perf_counter()
            if running >= n:
                break
            if running > best:
                best, best_at = running, time.monotonic()
            elif time.monotonic() - best_at > STALL_S:
                raise RuntimeError(
                    f"stalled: {running}/{n} cells RUNNING, none more for {STALL_S:g}s; "
                    + stuck_report(c, projects)
                )
            if now - last_log >= 5:
                log(f"cells: {running}/{n} RUNNING at {now - t0:.1f}s")
                last_log = now
            time.sleep(poll)
    return {
        "seconds": latest - t0_wall,
        "seconds_observed": now - t0,
        "seconds_accepted": t_posted,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between RUNNING counts")
    ap.add_argument("--cpu", type=float, default=CPU, help="CPU limit of each cell/container")
    ap.add_argument(
        "--projects",
        type=int,
        default=0,
        help=f"spread the cells over this many projects (default ceil(cells/{PER_NETWORK}))",
    )
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample server and agent with py-spy during the cells' burst",
    )
    args = ap.parse_args()
    n, par = args.cells, args.parallel
    k = args.projects or max(1, math.ceil(n / PER_NETWORK))
    projects = ["default"] + [f"burst{j}" for j in range(1, k)]

    with deployment() as d:
        with d.client() as c:
            for p in projects[1:]:
                c.create_project(p)
            log(f"warm-up cell (image load); {k} project(s): {', '.join(projects)}")
            task = c.create_cell(
                "default", "warm", "busybox", cpu=args.cpu, memory_mb=MEMORY_MB, command=COMMAND
            )
            if c.wait_task(task["id"], timeout=120)["state"] != "COMPLETED":
                raise RuntimeError("warm-up cell failed")

        baseline_s = float("nan")
        if not args.skip_baseline:
            base = Baseline(
                d.engine_url,
                d.busybox_archive,
                cpu=args.cpu,
                memory_mb=MEMORY_MB,
                command=tuple(COMMAND),
                pool_size=max(16, par * 2),
                networks=k,
            )
            try:
                base.create_start("bench-warm")
                base.remove_all(par, networks=False)
                log(f"baseline: {n} containers, {par} threads, {k} network(s)")
                base_meter = CpuMeter(d)
                base_meter.start()
                baseline_s = run_baseline(base, n, par)
                log(f"CPU seconds during the baseline: {base_meter.stop()}")
                log(f"baseline: {n} started in {baseline_s:.1f}s; removing them (untimed)")
                t = time.monotonic()
            finally:
                base.close()
            log(f"baseline removed in {time.monotonic() - t:.1f}s")
            time.sleep(3)  # let the engine finish its asynchronous clean-up

        log(f"cells: {n} through the API, {par} threads")
        meter = CpuMeter(d)
        try:
            meter.start()
            with py_spy({"server": d.server_proc.pid, "agent": d.agent_proc.pid}, args.py_spy):
                res = run_cells(d, n, par, args.poll, args.cpu, projects)
            log(f"CPU seconds during the burst: {meter.stop()}")
            log(
                f"cells: all RUNNING {res['seconds']:.1f}s after the first POST "
                f"(observed at {res['seconds_observed']:.1f}s)"
            )
        finally:
            log("stopping the agent; removing the cells' containers on the engine (untimed)")
            t = time.monotonic()
            removed = engine_remove_all(d, par)
            log(f"removed {removed} containers in {time.monotonic() - t:.1f}s")

    emit(
        {
            "cells": n,
            "parallel": par,
            "seconds": round(res["seconds"], 2),
            "baseline_seconds": round(baseline_s, 2),
            "ratio": round(res["seconds"] / baseline_s, 2),
            "cells_per_s": round(n / res["seconds"], 1),
            "target_seconds": TARGET_SECONDS,
            "target_ratio": TARGET_RATIO,
            "seconds_observed": round(res["seconds_observed"], 2),
            "seconds_all_accepted": round(res["seconds_accepted"], 2),
            "baseline_per_s": round(n / baseline_s, 1),
            "cpu": args.cpu,
            "memory_mb": MEMORY_MB,
            "projects": k,
            "cpu_seconds": meter.result,
            "baseline_cpu_seconds": base_meter.result if not args.skip_baseline else None,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
