"""A bounded mixed workload against a real server and agent (issue 14):
`bench/load.py --seconds S --rate R [--clients N]`.

Starts a real deployment (`cellplane.testing.harness.Deployment`: server and agent processes,
the agent's own podman engine; take the podman lock), then N client threads share a target rate
of R requests per second for S seconds (an open schedule: each request has its start time, so a
slow answer does not lower the offered rate), drawing from a fixed mix:

| class | share | what |
|---|---|---|
| read | 55 % | GET a cell list, a cell, projects, hosts, a task, whoami |
| token | 15 % | POST /identity/default/token (client_credentials, HTTP Basic) |
| cell_create | 10 % | POST a busybox cell (a `sleep 3600` that exits on SIGTERM, 0.05 CPU, 8 MB) |
| cell_delete | 10 % | DELETE the oldest cell this run created (none: a create) |
| task_stream | 10 % | GET a task's SSE stream until its first event |

Every `--sample` seconds the RSS of the server and of the agent's own process is sampled, and
of the agent's whole process tree (its podman service; with `--driver runc` the cells' own
processes too, which come and go with them). Prints one JSON object: per class count, errors
(any answer but the expected, or a transport error) and p50/p99 in ms; `errors`; the RSS
samples; `rss_growth_mb` of server, agent and agent tree (last sample minus the first one taken
after the warm-up, `--warmup` seconds) and `rss_growth_second_half_mb` (last sample minus the
one at half time: a leak grows as much again, a cache filling up much less); the achieved rate. Progress on stderr. Nothing is compared with a baseline
run: the targets are absolute (errors 0, growth <= 10 MB over a 600 s soak).
"""

from __future__ import annotations

import argparse
import base64
import collections
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import IMAGE_NAME, deployment, emit, log, proc_tree, rss_kb, summary_ms

MIX = (
    ("read", 55),
    ("token", 15),
    ("cell_create", 10),
    ("cell_delete", 10),
    ("task_stream", 10),
)
EXPECTED = {
    "read": {200},
    "token": {200},
    "cell_create": {202},
    "cell_delete": {202, 404},  # 404: another client deleted it first
    "task_stream": {200},
}


class Load:
    def __init__(self, url: str, admin_token: str, seed: int) -> None:
        self.url = url
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.cells: collections.deque[str] = collections.deque()
        self.tasks: collections.deque[str] = collections.deque(maxlen=50)
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: dict[str, int] = collections.Counter()
        self.examples: dict[str, str] = {}
        self.client_id = ""
        self.client_secret = ""
        self.n = 0

    def setup(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.admin, timeout=30) as c:
            r = c.post("/v1/clients", json={"name": "load", "grant_types": ["client_credentials"]})
            r.raise_for_status()
            self.client_id, self.client_secret = r.json()["client_id"], r.json()["client_secret"]
            r = c.post(
                "/v1/role-assignments",
                json={"client": self.client_id, "role": "project-viewer", "project": "default"},
            )
            r.raise_for_status()

    def pick(self) -> str:
        with self.lock:
            roll = self.rng.uniform(0, sum(w for _, w in MIX))
        for name, weight in MIX:
            if roll < weight:
                return name
            roll -= weight
        return MIX[0][0]

    def run_one(self, c: httpx.Client, kind: str) -> None:
        started = time.perf_counter()
        try:
            status = getattr(self, f"_{kind}")(c)
        except httpx.HTTPError as e:
            status = -1
            self.examples.setdefault(kind, repr(e))
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency[kind].append(elapsed)
            if status not in EXPECTED[kind]:
                self.errors[kind] += 1
                self.examples.setdefault(kind, f"status {status}")

    def _read(self, c: httpx.Client) -> int:
        with self.lock:
            cell = self.cells[-1] if self.cells else None
            task = self.tasks[-1] if self.tasks else None
        paths = ["/v1/projects/default/cells?limit=50", "/v1/projects", "/v1/hosts", "/v1/whoami"]
        if cell:
            paths.append(f"/v1/cells/{cell}")
        if task:
            paths.append(f"/v1/tasks/{task}")
        with self.lock:
            path = self.rng.choice(paths)
        return c.get(path).status_code

    def _token(self, c: httpx.Client) -> int:
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        r = c.post(
            "/identity/default/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        return r.status_code

    def _cell_create(self, c: httpx.Client) -> int:
        with self.lock:
            self.n += 1
            name = f"load-{self.n}"
        body = {
            "name": name,
            "image": IMAGE_NAME,
            # Exits at once on SIGTERM: a shell or `sleep` as PID 1 ignores it, and every delete
            # then waits out the 10 s stop grace (the first soak's deletes piled up behind it).
            "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
            "cpu": 0.05,
            "memory_mb": 8,
        }
        r = c.post("/v1/projects/default/cells", json=body)
        if r.status_code == 202:
            with self.lock:
                self.cells.append(r.json()["entity"]["id"])
                self.tasks.append(r.json()["id"])
        else:
            self.examples.setdefault("cell_create_answer", r.text[:300])
        return r.status_code

    def _cell_delete(self, c: httpx.Client) -> int:
        with self.lock:
            cell = self.cells.popleft() if len(self.cells) > 5 else None
        if cell is None:
            return self._cell_create(c)
        r = c.delete(f"/v1/cells/{cell}")
        if r.status_code == 202:
            with self.lock:
                self.tasks.append(r.json()["id"])
        elif r.status_code != 404:
            self.examples.setdefault("cell_delete_answer", r.text[:300])
        return r.status_code

    def _task_stream(self, c: httpx.Client) -> int:
        with self.lock:
            task = self.tasks[-1] if self.tasks else None
        if task is None:
            return c.get("/v1/whoami").status_code
        with c.stream("GET", f"/v1/tasks/{task}/events") as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    break
            return r.status_code


def main() -> int:
    # SIGTERM as Ctrl-C: the deployment (server, agent, its engine and containers) is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=120)
    p.add_argument("--rate", type=float, default=20, help="requests per second, all clients")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=15, help="seconds before the RSS baseline")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument(
        "--driver",
        choices=["podman", "runc"],
        default="podman",
        help="the agent's engine driver (runc: the agent runs containers with runc itself)",
    )
    args = p.parse_args()
    with deployment(agent_args=["--driver", args.driver]) as d:
        load = Load(d.url, d.admin_token, args.seed)
        load.setup()
        assert d.server_proc is not None and d.agent_proc is not None
        server_pid, agent_pid = d.server_proc.pid, d.agent_proc.pid
        samples: list[dict[str, float]] = []
        start = time.monotonic()
        end = start + args.seconds
        slots = iter(range(10**9))
        slot_lock = threading.Lock()

        def rss_mb(pid: int) -> float:
            return round(sum(rss_kb(q) for q in proc_tree(pid)) / 1024, 1)

        def sample(t: float) -> dict[str, float]:
            # The agent's own process apart from its tree (its engine service and, with the
            # runc driver, the cells' own processes: they come and go with the cells).
            return {
                "t": round(t, 1),
                "server_mb": rss_mb(server_pid),
                "agent_mb": round(rss_kb(agent_pid) / 1024, 1),
                "agent_tree_mb": rss_mb(agent_pid),
            }

        def sampler() -> None:
            while time.monotonic() < end:
                samples.append(sample(time.monotonic() - start))
                time.sleep(args.sample)

        def worker() -> None:
            with httpx.Client(base_url=d.url, headers=load.admin, timeout=60) as c:
                while True:
                    with slot_lock:
                        k = next(slots)
                    at = start + k / args.rate
                    if at >= end:
                        return
                    delay = at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    load.run_one(c, load.pick())

        log(f"load: {args.rate}/s from {args.clients} clients for {args.seconds:.0f} s")
        threads = [threading.Thread(target=sampler)] + [
            threading.Thread(target=worker) for _ in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        samples.append(sample(wall))
        done = sum(len(v) for v in load.latency.values())
        base = next((s for s in samples if s["t"] >= args.warmup), samples[0])
        half = next((s for s in samples if s["t"] >= args.seconds / 2), samples[0])
        last = samples[-1]
        doc: dict[str, Any] = {
            "benchmark": "load",
            "seconds": args.seconds,
            "target_rate": args.rate,
            "driver": args.driver,
            "clients": args.clients,
            "requests": done,
            "achieved_rate": round(done / wall, 2),
            "errors": sum(load.errors.values()),
            "classes": {
                k: {"count": len(v), "errors": load.errors.get(k, 0), **summary_ms(v)}
                for k, v in sorted(load.latency.items())
            },
            "error_examples": load.examples,
            "rss_growth_mb": {
                "server": round(last["server_mb"] - base["server_mb"], 1),
                "agent": round(last["agent_mb"] - base["agent_mb"], 1),
                "agent_tree": round(last["agent_tree_mb"] - base["agent_tree_mb"], 1),
                "baseline_at_s": base["t"],
            },
            # The second half alone: a leak grows as much again; a filling cache much less.
            "rss_growth_second_half_mb": {
                "server": round(last["server_mb"] - half["server_mb"], 1),
                "agent": round(last["agent_mb"] - half["agent_mb"], 1),
                "from_s": half["t"],
            },
            "rss_samples": samples,
            "cells_left": len(load.cells),
        }
        emit(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
