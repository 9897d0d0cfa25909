"""Scale: N cells through the real API onto H simulated hosts, until all are RUNNING.

Run `python bench/scale.py --hosts 1000 --cells 100000` (defaults: 100 hosts, 5,000 cells, a quick
run); prints ONE JSON object on stdout, progress on stderr. Targets (issue 13): 100,000 cells
RUNNING in <= 100 s, server RSS <= 1 GB, API p99 <= 100 ms.

- The server is real (`cellplane.testing.harness.Deployment`, its own process; SQLite in its
  data directory, or `--database-url` for PostgreSQL); no agent or engine is started.
- The hosts are `cellplane.testing.simhosts`: `--hosts` agents in `--sim-processes` processes,
  speaking the agent protocol over HTTP, with an in-memory engine that runs containers at once.
  They beat every `--heartbeat-s` (2 s, as the agent); a longer interval sets the server's
  thresholds (SUSPECT, DOWN) to 3x and 5x it (the agent's 2 s gives the default 6 s and 10 s).
- Cells (cpu 0.01, memory 16 MB) are created by `--clients` concurrent API clients, spread over
  ceil(cells / `--per-project`) projects (a project network without a cell quota holds 4,093):
  `--mode service` (the default, what a user of many identical cells does): services of
  `--instances` cells each (`POST /v1/projects/{p}/services`, one request per service);
  `--mode cells`: one `POST /v1/projects/{p}/cells` per cell.
- `seconds`: from the first POST to the poll of `/metrics` (`cellplane_cells{state="RUNNING"}`,
  every `--poll` s) that saw all N RUNNING; `create_seconds`: until the last POST returned.
- At full size: `api_p99_ms.get_cell` over `--samples` `GET /v1/cells/{id}` of random cells, and
  `api_p99_ms.list_page` over as many pages of `GET /v1/projects/{p}/cells?limit=100` (walking
  the cursors), each from one client, one request at a time.
- `server_rss_mb`: the server's peak resident memory (sampled with each poll) and at the end.
- `--profile DIR`: the server samples its threads' stacks (`cellplane.sampling`, switched on by
  `CELLPLANE_PROFILE`; written at exit to DIR/server.txt and DIR/server.txt.collapsed) and the
  report is printed to stderr.

The machine is shared: the JSON carries its load average and the CPU seconds of the server, the
simulated hosts and this script, so figures can be read against what else ran.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_seconds, emit, log, percentile, rss_kb

TARGET_SECONDS = 100.0
TARGET_RSS_MB = 1024.0
TARGET_P99_MS = 100.0
_RUNNING = re.compile(r'^cellplane_cells\{state="RUNNING"\} ([0-9.e+]+)$', re.M)


def running_count(http: Any) -> int:
    r = http.get("/metrics")
    r.raise_for_status()
    m = _RUNNING.search(r.text)
    return int(float(m.group(1))) if m else 0


def cell_body(image: str) -> dict[str, Any]:
    return {"image": image, "cpu": 0.01, "memory_mb": 16, "command": ["sleep", "3600"]}


async def _post(http: Any, url: str, body: dict[str, Any]) -> tuple[Any, float]:
    """POST with retries on 429/503 (as a client should); the response and its latency."""
    for attempt in range(20):
        t = time.monotonic()
        r = await http.post(url, json=body)
        if r.status_code in (429, 503) and attempt < 19:
            await asyncio.sleep(0.2 * (attempt + 1))
            continue
        break
    return r, time.monotonic() - t


def plan_requests(
    mode: str, projects: list[str], n: int, instances: int, image: str
) -> list[tuple[str, dict[str, Any], int]]:
    """(url, body, cells) of every create request: one cell each (`cells` mode), or services of
    `instances` cells each (`service` mode, the last one smaller), spread over the projects."""
    if mode == "cells":
        return [
            (
                f"/v1/projects/{projects[i % len(projects)]}/cells",
                {"name": f"c-{i:07d}", **cell_body(image)},
                1,
            )
            for i in range(n)
        ]
    out = []
    per_project = math.ceil(n / len(projects))
    for k, project in enumerate(projects):
        left = min(per_project, n - k * per_project)
        j = 0
        while left > 0:
            size = min(instances, left)
            body = {"name": f"s{j:03d}", "template": cell_body(image), "instances": size}
            out.append((f"/v1/projects/{project}/services", body, size))
            left -= size
            j += 1
    return out


async def create_cells(
    url: str, token: str, requests: list[tuple[str, dict[str, Any], int]], clients: int
) -> tuple[list[str], list[float], int]:
    """Send the create requests with `clients` concurrent clients; (task ids, latencies, cells
    refused)."""
    import httpx

    next_i = iter(requests)
    tasks: list[str] = []
    lat: list[float] = []
    refused = [0]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=600) as http:

        async def worker() -> None:
            for path, body, cells in next_i:
                r, took = await _post(http, path, body)
                lat.append(took)
                if r.status_code != 202:
                    refused[0] += cells
                    if refused[0] <= 5 * cells:
                        log(f"POST refused: {r.status_code} {r.text[:300]}")
                    continue
                tasks.append(r.json()["id"])
                if cells > 1 or len(tasks) % 5000 == 0:
                    log(f"{len(tasks)} requests accepted")

        await asyncio.gather(*(worker() for _ in range(clients)))
    return tasks, lat, refused[0]


def api_samples(http: Any, projects: list[str], samples: int) -> dict[str, float]:
    """p50/p99 (ms) of GET /v1/cells/{id} and of list pages, one request at a time."""
    ids: list[str] = []
    page_lat: list[float] = []
    k = 0
    cursor: str | None = None
    while len(page_lat) < samples:
        project = projects[k % len(projects)]
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        t = time.monotonic()
        r = http.get(f"/v1/projects/{project}/cells", params=params)
        page_lat.append(time.monotonic() - t)
        r.raise_for_status()
        doc = r.json()
        ids.extend(c["id"] for c in doc["items"])
        cursor = doc.get("next_cursor")
        if not cursor:
            k += 1
    get_lat: list[float] = []
    for cid in random.Random(7).sample(ids, min(samples, len(ids))):
        t = time.monotonic()
        http.get(f"/v1/cells/{cid}").raise_for_status()
        get_lat.append(time.monotonic() - t)

    def ms(v: list[float], p: float) -> float:
        return round(1000 * percentile(v, p), 1)

    return {
        "get_cell_p50": ms(get_lat, 50),
        "get_cell": ms(get_lat, 99),
        "list_page_p50": ms(page_lat, 50),
        "list_page": ms(page_lat, 99),
    }


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # SIGTERM as Ctrl-C: the server, the simulated hosts and the data directory are cleaned up.
    signal.signal(signal.SIGTERM, _interrupted)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--mode",
        choices=("service", "cells"),
        default="service",
        help="service: services of --instances cells (one request each); cells: one POST per cell",
    )
    p.add_argument("--instances", type=int, default=1000, help="cells per service (service mode)")
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--cells", type=int, default=5000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--sim-processes", type=int, default=2)
    p.add_argument("--per-project", type=int, default=4000)
    p.add_argument("--database-url", default=None)
    p.add_argument("--poll", type=float, default=0.5)
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after (s)")
    p.add_argument("--profile", type=Path, default=None, help="sample the server into DIR")
    p.add_argument(
        "--heartbeat-s",
        type=float,
        default=2.0,
        help="the simulated agents' heartbeat interval (the agent's: 2); the server's SUSPECT "
        "and DOWN thresholds are set to 3x and 5x it",
    )
    p.add_argument("--log-level", default="warning")
    a = p.parse_args()
    if a.hosts < 1 or a.cells < 1 or a.clients < 1 or a.instances < 1:
        p.error("--hosts, --cells, --clients and --instances must be at least 1")

    import httpx

    from cellplane.testing.busybox import build_busybox_archive
    from cellplane.testing.harness import Deployment
    from cellplane.testing.simhosts import SimHosts, SimSpec

    if a.profile is not None:
        a.profile.mkdir(parents=True, exist_ok=True)
        os.environ["CELLPLANE_PROFILE"] = str(a.profile.resolve() / "server.txt")
    if a.heartbeat_s <= 0:
        p.error("--heartbeat-s must be positive")
    os.environ["CELLPLANE_HEARTBEAT_SUSPECT_S"] = str(3 * a.heartbeat_s)
    os.environ["CELLPLANE_HEARTBEAT_DOWN_S"] = str(5 * a.heartbeat_s)
    d = Deployment(database_url=a.database_url, log_level=a.log_level)
    sim: SimHosts | None = None
    doc: dict[str, Any] = {
        "bench": "scale",
        "database": "postgresql" if a.database_url else "sqlite",
        "hosts": a.hosts,
        "cells": a.cells,
        "mode": a.mode,
        "instances": a.instances if a.mode == "service" else 1,
        "clients": a.clients,
        "heartbeat_s": a.heartbeat_s,
    }
    try:
        log(f"starting the server in {d.data_dir}")
        d.start_server()
        server_pid = d.server_proc.pid  # type: ignore[union-attr]
        archive = build_busybox_archive(d.data_dir / "bench-images")
        with d.client() as c:
            image = c.upload_image("busybox", archive)["id"]
            projects = [f"scale-{k}" for k in range(math.ceil(a.cells / a.per_project))]
            for name in projects:
                c.create_project(name)
        spec = SimSpec(
            server=d.url,
            join_token=d.join_file.read_text().strip(),
            count=a.hosts,
            processes=a.sim_processes,
            heartbeat_s=a.heartbeat_s,
        )
        t = time.monotonic()
        sim = SimHosts(spec).start()
        doc["join_seconds"] = round(time.monotonic() - t, 2)
        log(f"{a.hosts} simulated hosts joined in {doc['join_seconds']} s")
        http = httpx.Client(
            base_url=d.url, headers={"Authorization": f"Bearer {d.admin_token}"}, timeout=120
        )
        cpu0 = {
            "server": cpu_seconds(server_pid),
            "sim": sum(cpu_seconds(p) for p in sim.pids),
            "bench": time.process_time(),
        }
        load0 = os.getloadavg()
        peak = [rss_kb(server_pid)]
        done = asyncio.Event()

        async def watch(t0: float) -> float | None:
            while not done.is_set():
                await asyncio.sleep(a.poll)
                peak[0] = max(peak[0], rss_kb(server_pid))
            while time.monotonic() - t0 < a.timeout:
                n = await asyncio.to_thread(running_count, http)
                last_running[0] = n
                peak[0] = max(peak[0], rss_kb(server_pid))
                if n >= accepted[0]:
                    return time.monotonic() - t0
                log(f"{n} of {accepted[0]} RUNNING")
                await asyncio.sleep(a.poll)
            return None

        accepted = [a.cells]
        last_running = [0]

        async def run() -> tuple[float, float | None, list[float], int]:
            t0 = time.monotonic()
            w = asyncio.create_task(watch(t0))
            _tasks, lat, refused = await create_cells(d.url, d.admin_token, requests, a.clients)
            created = time.monotonic() - t0
            accepted[0] = a.cells - refused
            done.set()
            return created, await w, lat, refused

        requests = plan_requests(a.mode, projects, a.cells, a.instances, image)
        log(
            f"creating {a.cells} cells in {len(requests)} requests ({a.mode} mode) with "
            f"{a.clients} clients in {len(projects)} projects"
        )
        created, seconds, lat, refused = asyncio.run(run())
        doc["create_seconds"] = round(created, 2)
        doc["requests"] = len(requests)
        doc["accepted"] = a.cells - refused
        doc["refused"] = refused
        doc["post_p50_ms"] = round(1000 * percentile(lat, 50), 1)
        doc["post_p99_ms"] = round(1000 * percentile(lat, 99), 1)
        if seconds is None:
            doc["seconds"] = None
            doc["error"] = f"not all RUNNING after {a.timeout} s"
            doc["running_at_timeout"] = last_running[0]
            doc["running_per_s"] = round(last_running[0] / a.timeout, 1)
        else:
            doc["seconds"] = round(seconds, 2)
            doc["cells_per_s"] = round(doc["accepted"] / seconds, 1)
        log(f"all RUNNING after {doc['seconds']} s; sampling the API at full size")
        doc["api_p99_ms"] = api_samples(http, projects, a.samples)
        doc["server_rss_mb"] = round(rss_kb(server_pid) / 1024, 1)
        doc["server_rss_peak_mb"] = round(peak[0] / 1024, 1)
        doc["cpu_seconds"] = {
            "server": round(cpu_seconds(server_pid) - cpu0["server"], 1),
            "sim_hosts": round(sum(cpu_seconds(p) for p in sim.pids) - cpu0["sim"], 1),
            "bench": round(time.process_time() - cpu0["bench"], 1),
        }
        doc["loadavg_before"] = [round(x, 2) for x in load0]
        doc["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        http.close()
        doc["sim"] = sim.stop()
        sim = None
        ok = (
            doc["seconds"] is not None
            and doc["seconds"] <= TARGET_SECONDS
            and doc["server_rss_peak_mb"] <= TARGET_RSS_MB
            and doc["api_p99_ms"]["get_cell"] <= TARGET_P99_MS
            and doc["api_p99_ms"]["list_page"] <= TARGET_P99_MS
        )
        doc["targets"] = {
            "seconds": TARGET_SECONDS,
            "rss_mb": TARGET_RSS_MB,
            "p99_ms": TARGET_P99_MS,
            "met": ok,
        }
    finally:
        if sim is not None:
            sim.stop()
        d.stop_server()
        prof = os.environ.get("CELLPLANE_PROFILE")
        if prof and Path(prof).exists():
            print(Path(prof).read_text(), file=sys.stderr)
        d.close()
    emit(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
