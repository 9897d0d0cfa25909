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

Projects: the cells go to one project by default (`--projects`): a project's network is sized
for its cell quota (a project without one gets a /20, 4,093 addresses), so it holds the burst.

Same run, same engine, before the cells (each phase is removed, untimed, before the next):
- `baseline_seconds`: N identical containers (same image, command, limits, on networks of the
  same size) created+started by P threads directly through the docker SDK, the limits applied
  as the agent applies them (memory at create, CPU quota and memory by libpod's update right
  after the start); time until the last one returned;
- `engine_best_seconds`: the fastest the bare engine makes the same containers: no limits, the
  best of `--best-parallel` thread counts (chosen on a `--probe`-container trial of each);
- `engine_cpu`: the engine's own CPU cost per container (podman service with netavark and
  `runc start`; conmon with `runc create`; the container cgroup, i.e. `runc init`; aardvark-dns)
  in each phase, and `podman_ms_per_container_by_100`: the podman service's CPU per container
  for each 100 made in the baseline (how the cost grows with the containers the engine holds).

Clean-up: the agent is stopped, then the cells' containers are force-removed directly on the engine
with P parallel removes, and the deployment is closed (which removes anything left).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    Baseline,
    CpuMeter,
    EngineCpu,
    RuncBaseline,
    deployment,
    emit,
    engine_pid,
    engine_remove_all,
    log,
    parallel_map,
    py_spy,
)

TARGET_SECONDS = 30
TARGET_RATIO = 1.2  # against engine_best_seconds
CPU = 0.01
MEMORY_MB = 16
COMMAND = ["sleep", "3600"]
SAMPLE_EVERY = 100
STALL_S = 90.0
RUNC_PREFIX = 20


def run_baseline(
    base: Baseline, n: int, parallel: int, meter: EngineCpu | None = None, stem: str = "bench"
) -> float:
    counter = itertools.count()
    done = [0]
    lock = threading.Lock()

    def worker(_: int) -> None:
        while (i := next(counter)) < n:
            base.create_start(f"{stem}-{i:05d}", i)
            with lock:
                done[0] += 1
                if meter is not None and done[0] % SAMPLE_EVERY == 0:
                    meter.sample()
                if done[0] % 200 == 0:
                    log(f"{stem}: {done[0]}/{n} started")

    t0 = time.perf_counter()
    parallel_map(worker, range(parallel), parallel)
    return time.perf_counter() - t0


def engine_phase(
    d, base: Baseline, n: int, parallel: int, stem: str
) -> tuple[float, dict[str, object], list[float]]:
    """Make N containers on the bare engine; (seconds, engine CPU, podman ms/container by 100)."""
    meter = EngineCpu(engine_pid(d), str(d.engine_dir))
    meter.start()
    seconds = run_baseline(base, n, parallel, meter, stem)
    cpu = meter.stop(list(base.created))
    log(f"{stem}: {n} started in {seconds:.1f}s; engine CPU {cpu}; removing them (untimed)")
    t = time.monotonic()
    base.remove_all(parallel, networks=False)
    log(f"{stem}: removed in {time.monotonic() - t:.1f}s")
    time.sleep(3)  # let the engine finish its asynchronous clean-up
    return seconds, cpu, meter.podman_ms_per_container_by_step(SAMPLE_EVERY)


def runc_phase(d, n: int, parallel: int, cpu: float) -> float:
    """`--driver runc`'s bare runtime: N bundles prepared (untimed), then run by `parallel`
    threads (`runc run --detach` + the CPU limit written); seconds until the last one ran."""
    base = RuncBaseline(d.engine_url, d.busybox_archive, cpu, MEMORY_MB, tuple(COMMAND))
    try:
        log(f"runc baseline: preparing {n} bundles (untimed)")
        ids = [base.prepare(f"bench-runc-{i:05d}") for i in range(n)]
        t0 = time.perf_counter()
        parallel_map(base.run, ids, parallel)
        seconds = time.perf_counter() - t0
        log(f"runc baseline: {n} started in {seconds:.1f}s; removing them (untimed)")
    finally:
        base.close()
    return seconds


def best_parallel(
    d, base: Baseline, choices: list[int], probe: int
) -> tuple[int, dict[str, float]]:
    """The thread count that makes `probe` containers fastest (each trial removed after)."""
    trials: dict[str, float] = {}
    for p in choices:
        trials[str(p)] = round(run_baseline(base, probe, p, None, f"probe{p}"), 2)
        base.remove_all(max(choices), networks=False)
        time.sleep(2)
    best = min(choices, key=lambda p: trials[str(p)])
    log(f"engine best: trials {trials} -> {best} threads")
    return best, trials


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
    ap.add_argument("--projects", type=int, default=1, help="spread the cells over this many")
    ap.add_argument("--skip-baseline", action="store_true", help="no baseline, no engine best")
    ap.add_argument(
        "--best-parallel",
        default="4,8,16",
        help="thread counts tried for engine_best_seconds (comma-separated)",
    )
    ap.add_argument("--probe", type=int, default=100, help="containers per thread-count trial")
    ap.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample server and agent with py-spy during the cells' burst",
    )
    ap.add_argument(
        "--agent-parallelism",
        default="adaptive",
        help="the agent's engine work at once: adaptive (its default) or a fixed number",
    )
    ap.add_argument(
        "--driver",
        choices=["podman", "runc"],
        default="podman",
        help="the agent's cell driver; with runc, a bare-runc baseline runs too",
    )
    args = ap.parse_args()
    n, par, k = args.cells, args.parallel, args.projects
    runc = args.driver == "runc"
    runc_s = float("nan")
    choices = [int(x) for x in args.best_parallel.split(",") if x.strip()]
    projects = ["default"] + [f"burst{j}" for j in range(1, k)]
    baseline_s = best_s = float("nan")
    best_par: int | None = None
    trials: dict[str, float] = {}
    baseline_cpu: dict[str, object] | None = None
    best_cpu: dict[str, object] | None = None
    growth: list[float] = []

    agent_args = ["--driver", args.driver]
    if args.agent_parallelism != "adaptive":
        agent_args += ["--parallelism", str(int(args.agent_parallelism)), "--fixed-parallelism"]
    with deployment(agent_args=agent_args) as d:
        with d.client() as c:
            for p in projects[1:]:
                c.create_project(p)
            log(f"warm-up cell (image load); {k} project(s): {', '.join(projects)}")
            task = c.create_cell(
                "default", "warm", "busybox", cpu=args.cpu, memory_mb=MEMORY_MB, command=COMMAND
            )
            if c.wait_task(task["id"], timeout=120)["state"] != "COMPLETED":
                raise RuntimeError("warm-up cell failed")
            # The size of the cells' network, for networks of the same size in the baselines.
            cells = c.list_cells("default", limit=1)["items"]
            # runc cells are not on the engine: the baselines' networks get the size a project
            # without a quota gets (a /20), as the cells' network has.
            prefix = RUNC_PREFIX if runc else _prefix_of(d, cells[0]["container_id"])
        if runc:
            runc_s = runc_phase(d, n, par, args.cpu)

        if not args.skip_baseline:
            base = Baseline(
                d.engine_url,
                d.busybox_archive,
                cpu=args.cpu,
                memory_mb=MEMORY_MB,
                command=tuple(COMMAND),
                pool_size=max(16, par * 2, *choices),
                networks=k,
                prefix_length=prefix,
            )
            try:
                base.create_start("bench-warm")
                base.remove_all(par, networks=False)
                log(f"baseline: {n} containers, {par} threads, {k} network(s) of /{prefix}")
                base_meter = CpuMeter(d)
                base_meter.start()
                baseline_s, baseline_cpu, growth = engine_phase(d, base, n, par, "baseline")
                log(f"CPU seconds during the baseline: {base_meter.stop()}")
                base.limits = "none"
                best_par, trials = best_parallel(d, base, choices, args.probe)
                best_s, best_cpu, _ = engine_phase(d, base, n, best_par, "best")
            finally:
                base.close()

        log(f"cells: {n} through the API, {par} threads")
        meter = CpuMeter(d)
        engine = EngineCpu(engine_pid(d), str(d.engine_dir))
        warm = set() if runc else set(_cell_containers(d))
        try:
            meter.start()
            engine.start()
            with py_spy({"server": d.server_proc.pid, "agent": d.agent_proc.pid}, args.py_spy):
                res = run_cells(d, n, par, args.poll, args.cpu, projects)
            log(f"CPU seconds during the burst: {meter.stop()}")
            cells_cpu = (
                None if runc else engine.stop([c for c in _cell_containers(d) if c not in warm])
            )
            log(
                f"cells: all RUNNING {res['seconds']:.1f}s after the first POST "
                f"(observed at {res['seconds_observed']:.1f}s); engine CPU {cells_cpu}"
            )
        finally:
            log("stopping the agent; removing the cells' containers on the engine (untimed)")
            t = time.monotonic()
            # runc cells: the deployment's teardown deletes them (runc delete --force).
            removed = 0 if runc else engine_remove_all(d, par)
            log(f"removed {removed} containers in {time.monotonic() - t:.1f}s")

    emit(
        {
            "cells": n,
            "driver": args.driver,
            "runc_baseline_seconds": round(runc_s, 2) if runc else None,
            "ratio_to_runc_baseline": round(res["seconds"] / runc_s, 2) if runc else None,
            "parallel": par,
            "agent_parallelism": args.agent_parallelism,
            "seconds": round(res["seconds"], 2),
            "baseline_seconds": round(baseline_s, 2),
            "engine_best_seconds": round(best_s, 2),
            "ratio": round(res["seconds"] / baseline_s, 2),
            "ratio_to_engine_best": round(res["seconds"] / best_s, 2),
            "cells_per_s": round(n / res["seconds"], 1),
            "target_seconds": TARGET_SECONDS,
            "target_ratio_to_engine_best": TARGET_RATIO,
            "seconds_observed": round(res["seconds_observed"], 2),
            "seconds_all_accepted": round(res["seconds_accepted"], 2),
            "baseline_per_s": round(n / baseline_s, 1),
            "engine_best_per_s": round(n / best_s, 1),
            "engine_best_parallel": best_par,
            "engine_best_trials_s": trials,
            "cpu": args.cpu,
            "memory_mb": MEMORY_MB,
            "projects": k,
            "network_prefix": prefix,
            "engine_cpu": {"cells": cells_cpu, "baseline": baseline_cpu, "engine_best": best_cpu},
            "podman_ms_per_container_by_100": growth,
            "cpu_seconds": meter.result,
            "baseline_cpu_seconds": base_meter.result if not args.skip_baseline else None,
        }
    )
    return 0


def _prefix_of(d, container_id: str) -> int | None:
    """The prefix length of the network a container of the deployment is on."""
    import ipaddress

    import docker

    client = docker.APIClient(base_url=d.engine_url, version="1.41")
    try:
        nets = client.inspect_container(container_id)["NetworkSettings"]["Networks"]
        (net,) = nets.values()
        address = f"{net['IPAddress']}/{net['IPPrefixLen']}"
        return ipaddress.ip_interface(address).network.prefixlen
    finally:
        client.close()


def _cell_containers(d) -> list[str]:
    import docker

    client = docker.APIClient(base_url=d.engine_url, version="1.41", timeout=120)
    try:
        items = client.containers(all=True, filters={"label": "cellplane.cell"})
        return [str(i["Id"]) for i in items]
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
