"""Cell start latency: API request -> cell RUNNING, warm image, against a bare engine create+start.

Run `python bench/cell_start.py --cells 50`; prints one JSON object on stdout (progress on stderr).

For each of N cells, one after the other: the clock starts just before `POST
/v1/projects/default/cells` and stops when the client observes the cell RUNNING. By default it
observes by following the CREATE_CELL task's server-sent events (`GET /v1/tasks/{id}/events`): the
task completes in the same transaction that records the cell RUNNING, and the stream delivers that
without a polling delay. `--observe poll` instead polls `GET /v1/cells/{id}` every 5 ms. The cell is
then deleted and its deletion awaited (not timed), then `--settle` (0.2 s) passes, so every cell
starts on an engine holding the same containers and not busy cleaning up.

Interleaved with the cells, in the same run and on the same engine (the agent's podman service), the
baseline: N bare `POST /containers/create` + `POST /containers/{id}/start` through the docker SDK
with the same image, command, limits and a bridge network; each container removed (not timed).
One warm-up cell and one warm-up baseline container come first: the image is loaded, the project
network exists, connections are open.

`--hosts N` (root) measures cross-host starts instead: the server listens on a private underlay
and, besides its own agent (the single host, beside the server), N dev hosts join it
(`cellplane.devhosts`: network namespaces, each with its own agent and podman, reached over the
underlay). Samples alternate: one cell on the single host (the dev hosts in maintenance), one
cell spread over the dev hosts (the single host in maintenance), the same way each time; the
JSON gives both p50s and their ratio (target: cross-host within 1.5x of single-host).

`--isolation sandbox` times sandboxed cells (gVisor's runsc) and, interleaved in the same run,
standard cells too: `ratio_sandbox_to_standard` is their p50s' ratio (target <= 2), besides the
ratio to the bare engine baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Baseline, CpuMeter, RuncBaseline, deployment, emit, log, summary_ms

TARGET_P50_MS = 150
TARGET_P99_MS = 400
TARGET_RATIO = 1.5
TARGET_SANDBOX_RATIO = 2.0


# Where the time of one cell start goes, from the timestamps the server and agent record (same clock):
# client t0 -> cell event "accepted" (server, in the POST) -> "scheduled" (controller pass) ->
# "image-ready" (agent picked the assignment up and runs CREATE) -> "created" (engine create
# returned) -> "started" (engine start returned) -> task finished_at (server recorded RUNNING from
# the agent's status report) -> client observed RUNNING.
SEGMENTS = (
    ("api_accept", None, "accepted"),
    ("to_scheduled", "accepted", "scheduled"),
    ("to_agent_action", "scheduled", "image-ready"),
    ("engine_create", "image-ready", "created"),
    ("engine_start", "created", "started"),
    ("report_running", "started", "running"),
    ("client_observe", "running", "observed"),
)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def breakdown(cell: dict, task: dict, t0_wall: float, t1_wall: float) -> dict[str, float]:
    marks = {"t0": t0_wall, "observed": t1_wall, "running": _ts(task["finished_at"])}
    for ev in cell.get("events") or []:
        marks.setdefault(ev["type"], _ts(ev["at"]))
    out = {}
    for name, start, end in SEGMENTS:
        a, b = marks.get(start or "t0"), marks.get(end)
        if a is not None and b is not None:
            out[name] = b - a
    return out


def create_cell(
    c, name: str, cpu: float, memory_mb: int, command: list[str], isolation: str = "standard"
) -> dict:
    """POST /v1/projects/default/cells through the SDK's transport (retries, Idempotency-Key).

    The SDK's `create_cell` does not expose `stop_timeout`; the benchmark sets it so that the
    untimed deletion between samples does not wait 10 s for `sleep` (PID 1 ignores SIGTERM).
    0.4, not 0: the agent reads `cell.get("stop_timeout") or 10`, which turns 0 into 10 s; the
    driver rounds 0.4 to 0, so the engine kills at once.
    """
    body = {
        "name": name,
        "image": "busybox",
        "cpu": cpu,
        "memory_mb": memory_mb,
        "command": command,
        "stop_timeout": 0.4,
        "isolation": isolation,
    }
    return c._json("POST", "/v1/projects/default/cells", json_body=body)


def observe_sse(c, task: dict) -> float:
    """Seconds (perf_counter) at which the task's event stream reports it COMPLETED."""
    for t in c.watch_task(task["id"], timeout=120):
        if t["state"] == "COMPLETED":
            return time.perf_counter()
        if t["state"] == "ERROR":
            raise RuntimeError(f"cell creation failed: {t.get('error')}")
    raise RuntimeError("task stream ended without a terminal state")


def observe_poll(c, task: dict, interval: float = 0.005) -> float:
    """Seconds (perf_counter) at which GET /v1/cells/{id} first answers RUNNING."""
    cell_id = task["entity"]["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        cell = c.get_cell(cell_id)
        if cell["state"] == "RUNNING":
            return time.perf_counter()
        if cell["state"] in ("FAILED", "EXITED"):
            raise RuntimeError(f"cell {cell_id} is {cell['state']}: {cell.get('message')}")
        time.sleep(interval)
    raise RuntimeError(f"cell {cell_id} not RUNNING after 120 s")


def main_hosts(args: argparse.Namespace) -> int:
    """`--hosts N`: cross-host cell start against the single host beside the server."""
    from cellplane import devhosts
    from cellplane.testing.busybox import build_busybox_archive
    from cellplane.testing.harness import Deployment

    underlay = devhosts.Underlay(bridge="cpb0", subnet="10.79.0.0/24", namespace_prefix="cpb-")
    observe = observe_sse if args.observe == "sse" else observe_poll
    command = ["sleep", "3600"]
    d = Deployment(log_level="warning", listen_host=devhosts.ensure_underlay(underlay))
    single_s: list[float] = []
    cross_s: list[float] = []
    try:
        log(f"starting server + agent in {d.data_dir}, then {args.hosts} dev hosts")
        d.start()
        with d.client() as c:
            c.upload_image("busybox", build_busybox_archive(d.data_dir / "bench-images"))
            names = [f"b{i + 1}" for i in range(args.hosts)]
            for name in names:
                token = c.create_join_token(ttl_s=600, uses=1)["token"]
                devhosts.add_host(
                    name, data_dir=d.data_dir, server_url=d.url, join_token=token, underlay=underlay
                )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                states = {h["name"]: h["state"] for h in c.list_hosts()["items"]}
                if all(states.get(n) == "READY" for n in names):
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"dev hosts not READY: {states}")
            ids = {h["name"]: h["id"] for h in c.list_hosts()["items"]}
            single, cross = ids[d.agent_name], [ids[n] for n in names]

            def only(on: list[str]) -> None:
                for host_id in ids.values():
                    c.set_maintenance(host_id, host_id not in on)

            def one(name: str) -> float:
                t0 = time.perf_counter()
                task = create_cell(c, name, args.cpu, args.memory_mb, command)
                t1 = observe(c, task)
                cell_id = task["entity"]["id"]
                c.wait_task(c.delete_cell(cell_id)["id"], timeout=120)
                time.sleep(args.settle)
                return t1 - t0

            log("warm-up: one cell on each host")
            only([single])
            one("warm-s")
            for i, host_id in enumerate(cross):
                only([host_id])
                one(f"warm-x{i}")
            for i in range(args.cells):
                only([single])
                single_s.append(one(f"s{i}"))
                only(cross)
                cross_s.append(one(f"x{i}"))
                if (i + 1) % 10 == 0 or i + 1 == args.cells:
                    log(
                        f"{i + 1}/{args.cells}: single-host p50 "
                        f"{statistics.median(single_s) * 1000:.0f} ms, cross-host p50 "
                        f"{statistics.median(cross_s) * 1000:.0f} ms"
                    )
    finally:
        log("removing the dev hosts and the deployment")
        devhosts.remove_all(d.data_dir)
        devhosts.net.remove_bridge(underlay)
        d.close()
    one_host, many = summary_ms(single_s), summary_ms(cross_s)
    emit(
        {
            "cells": args.cells,
            "hosts": args.hosts,
            "cross_host_p50_ms": many["p50"],
            "cross_host_p99_ms": many["p99"],
            "single_host_p50_ms": one_host["p50"],
            "single_host_p99_ms": one_host["p99"],
            "ratio_p50": round(many["p50"] / one_host["p50"], 2),
            "target_ratio": TARGET_RATIO,
            "observe": args.observe,
        }
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=50)
    ap.add_argument(
        "--hosts", type=int, default=0, help="cross-host starts on this many dev hosts (root)"
    )
    ap.add_argument("--cpu", type=float, default=0.25)
    ap.add_argument("--memory-mb", type=int, default=64)
    ap.add_argument("--observe", choices=["sse", "poll"], default="sse")
    ap.add_argument(
        "--isolation",
        choices=["standard", "sandbox"],
        default="standard",
        help="sandbox: time sandboxed cells (gVisor), with standard ones interleaved to compare",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=0.2,
        help="pause after each (untimed) removal so the engine's asynchronous clean-up is done",
    )
    ap.add_argument(
        "--driver",
        choices=["podman", "runc"],
        default="podman",
        help="the agent's cell driver; with runc, a bare `runc run` baseline is interleaved too",
    )
    args = ap.parse_args()
    if args.hosts:
        return main_hosts(args)

    observe = observe_sse if args.observe == "sse" else observe_poll
    command = ["sleep", "3600"]
    cell_s: list[float] = []
    std_s: list[float] = []  # with --isolation sandbox: the standard cells of the same run
    base_s: list[float] = []
    sandbox = args.isolation == "sandbox"
    parts: list[dict[str, float]] = []
    runc_s: list[float] = []  # with --driver runc: bare `runc run` of a prepared bundle
    with deployment(agent_args=["--driver", args.driver]) as d, d.client() as c:
        runc_base = (
            RuncBaseline(d.engine_url, d.busybox_archive, args.cpu, args.memory_mb, tuple(command))
            if args.driver == "runc"
            else None
        )
        base = Baseline(
            d.engine_url,
            d.busybox_archive,
            cpu=args.cpu,
            memory_mb=args.memory_mb,
            command=tuple(command),
        )
        try:

            def one_cell(name: str, isolation: str = args.isolation) -> float:
                t0_wall = time.time()
                t0 = time.perf_counter()
                task = create_cell(c, name, args.cpu, args.memory_mb, command, isolation)
                t1 = observe(c, task)
                t1_wall = t0_wall + (t1 - t0)
                cell_id = task["entity"]["id"]
                got = c.get_cell(cell_id)
                if got["state"] != "RUNNING":
                    raise RuntimeError(f"{name}: task done but cell is {got['state']}")
                if isolation == args.isolation:
                    parts.append(breakdown(got, c.get_task(task["id"]), t0_wall, t1_wall))
                deleted = c.delete_cell(cell_id)
                c.wait_task(deleted["id"], timeout=120)
                time.sleep(args.settle)
                return t1 - t0

            def one_base(name: str) -> float:
                t0 = time.perf_counter()
                cid = base.create_start(name)
                t1 = time.perf_counter()
                if not base.is_running(cid):
                    raise RuntimeError(f"baseline {name} not running")
                base.remove(cid)
                time.sleep(args.settle)
                return t1 - t0

            def one_runc(name: str) -> float:
                assert runc_base is not None
                cid = runc_base.prepare(name)
                t0 = time.perf_counter()
                runc_base.run(cid)
                t1 = time.perf_counter()
                runc_base.remove(cid)
                time.sleep(args.settle)
                return t1 - t0

            log("warm-up: one cell, one baseline container")
            warm_cell = one_cell("warm")
            if sandbox:
                one_cell("warm-std", "standard")
            parts.clear()
            warm_base = one_base("bench-warm")
            if runc_base is not None:
                one_runc("bench-runc-warm")
            log(f"warm-up cell {warm_cell * 1000:.0f} ms, baseline {warm_base * 1000:.0f} ms")
            meter = CpuMeter(d)
            meter.start()
            for i in range(args.cells):
                cell_s.append(one_cell(f"c{i}"))
                if sandbox:
                    std_s.append(one_cell(f"s{i}", "standard"))
                base_s.append(one_base(f"bench-b{i}"))
                if runc_base is not None:
                    runc_s.append(one_runc(f"bench-r{i}"))
                if (i + 1) % 10 == 0 or i + 1 == args.cells:
                    log(
                        f"{i + 1}/{args.cells}: {args.isolation} cell p50 "
                        f"{statistics.median(cell_s) * 1000:.0f} ms,"
                        + (
                            f" standard p50 {statistics.median(std_s) * 1000:.0f} ms,"
                            if sandbox
                            else ""
                        )
                        + f" baseline p50 {statistics.median(base_s) * 1000:.0f} ms"
                    )
            log(f"CPU seconds over the whole run (cells and baseline): {meter.stop()}")
        finally:
            base.close()
            if runc_base is not None:
                runc_base.close()

    cells = summary_ms(cell_s)
    bare = summary_ms(base_s)
    compared = {}
    if sandbox:
        std = summary_ms(std_s)
        compared = {
            "standard_p50_ms": std["p50"],
            "standard_p99_ms": std["p99"],
            "ratio_sandbox_to_standard": round(cells["p50"] / std["p50"], 2),
            "target_sandbox_ratio": TARGET_SANDBOX_RATIO,
        }
    if runc_s:
        bare_runc = summary_ms(runc_s)
        compared |= {
            "runc_baseline_p50_ms": bare_runc["p50"],
            "runc_baseline_p99_ms": bare_runc["p99"],
            # Cellplane's own share: the cell's p50 less the bare runtime's, same run.
            "share_p50_ms": round(cells["p50"] - bare_runc["p50"], 1),
        }
    emit(
        {
            "cells": args.cells,
            "driver": args.driver,
            "isolation": args.isolation,
            **compared,
            "p50_ms": cells["p50"],
            "p99_ms": cells["p99"],
            "mean_ms": cells["mean"],
            "baseline_p50_ms": bare["p50"],
            "baseline_p99_ms": bare["p99"],
            "ratio_p50": round(cells["p50"] / bare["p50"], 2),
            "target_p50_ms": TARGET_P50_MS,
            "target_ratio": TARGET_RATIO,
            "target_p99_ms": TARGET_P99_MS,
            "observe": args.observe,
            "min_ms": cells["min"],
            "max_ms": cells["max"],
            "baseline_mean_ms": bare["mean"],
            "cpu_seconds": meter.result,
            "breakdown_p50_ms": {
                name: round(statistics.median(p[name] for p in parts if name in p) * 1000, 1)
                for name, _, _ in SEGMENTS
                if any(name in p for p in parts)
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
