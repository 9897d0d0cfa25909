"""Scheduler throughput benchmark: one `place` call over a large synthetic cluster.

Run `python bench/scheduler.py --hosts 10000 --placements 1000000`; prints one JSON object.
The request stream is a realistic mix of jobs (node groups / services), each a run of
identical requests: flavors from nano to large, labels on some jobs, zone restrictions,
group spread with instancePerHost, host ports, WEAK and STRICT group associations. Hosts
come in three sizes with rack zones, ssd/gpu labels, some usage and a few non-READY.
`--run-length 1` gives every request its own shape (the worst case for the engine);
`--small` instead times many small batches (the common case) with both engines.
Only `place` is timed; building the snapshot and requests is not.
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import time

from cellplane.scheduler import HostSnapshot, PlacementRequest, Resources, _small, place

# The package re-exports the function `place`, which shadows the module of the same name.
place_mod = importlib.import_module("cellplane.scheduler.place")

__all__ = ["main"]

HOST_TYPES = [  # (weight, cpu, memory MB, disk GB)
    (0.50, 32.0, 131072, 2000),
    (0.35, 64.0, 262144, 4000),
    (0.15, 96.0, 393216, 8000),
]
FLAVORS = [  # (weight, Resources)
    (0.30, Resources(0.1, 128, 1)),
    (0.40, Resources(0.25, 256, 2)),
    (0.20, Resources(0.5, 512, 5)),
    (0.10, Resources(1.0, 1024, 10)),
]
RACKS = [f"rack{i}" for i in range(1, 9)]


def make_hosts(n: int, rng: random.Random) -> list[HostSnapshot]:
    hosts = []
    for i in range(n):
        _, cpu, mem, disk = rng.choices(HOST_TYPES, weights=[t[0] for t in HOST_TYPES])[0]
        labels = {}
        if rng.random() < 0.4:
            labels["ssd"] = "true"
        if rng.random() < 0.05:
            labels["gpu"] = "true"
        fill = rng.random() * 0.2
        roll = rng.random()
        state = "READY" if roll < 0.98 else ("SUSPECT" if roll < 0.99 else "MAINTENANCE")
        hosts.append(
            HostSnapshot(
                id=f"host-{i:05d}",
                state=state,
                capacity=Resources(cpu, mem, disk),
                used=Resources(round(cpu * fill, 1), int(mem * fill), int(disk * fill)),
                labels=labels,
                zone=RACKS[i % len(RACKS)],
                used_ports=frozenset({("tcp", 22)}),
            )
        )
    return hosts


def make_requests(
    total: int, rng: random.Random, run_length: int | None
) -> tuple[list[PlacementRequest], dict[str, int]]:
    """Jobs until `total` requests; returns the requests and how many carry each constraint."""
    out: list[PlacementRequest] = []
    seen = {"labels": 0, "zones": 0, "max_per_host": 0, "ports": 0, "near_weak": 0}
    seen["near_strict"] = 0
    groups: list[str] = []
    job = 0
    while len(out) < total:
        if run_length is not None:
            count = run_length
        else:
            roll = rng.random()
            count = (
                rng.randint(1, 10)
                if roll < 0.5
                else rng.randint(10, 100)
                if roll < 0.85
                else rng.randint(100, 1000)
            )
        count = min(count, total - len(out))
        res = rng.choices(FLAVORS, weights=[f[0] for f in FLAVORS])[0][1]
        group = f"job-{job}"
        labels: dict[str, str] = {}
        roll = rng.random()
        if roll < 0.02:
            labels = {"gpu": "true"}
        elif roll < 0.12:
            labels = {"ssd": "true"}
        zones = frozenset(rng.sample(RACKS, rng.randint(1, 3))) if rng.random() < 0.2 else None
        max_per_host = rng.choice([1, 2, 4]) if rng.random() < 0.3 else None
        ports: frozenset[tuple[str, int]] = frozenset()
        if count <= 50 and rng.random() < 0.1:
            ports = frozenset({("tcp", 8000 + job % 200)})
        near, strict = None, False
        if groups and rng.random() < 0.06:
            near = rng.choice(groups[-50:])
            strict = count <= 10 and rng.random() < 0.3
        for i in range(count):
            out.append(
                PlacementRequest(
                    id=f"{group}-{i}",
                    resources=res,
                    labels=labels,
                    ports=ports,
                    group=group,
                    max_per_host=max_per_host,
                    zones=zones,
                    near=near,
                    near_strict=strict,
                )
            )
        seen["labels"] += count if labels else 0
        seen["zones"] += count if zones is not None else 0
        seen["max_per_host"] += count if max_per_host is not None else 0
        seen["ports"] += count if ports else 0
        seen["near_weak"] += count if near is not None and not strict else 0
        seen["near_strict"] += count if strict else 0
        groups.append(group)
        job += 1
    return out, seen


def bench_large(hosts_n: int, placements: int, seed: int, run_length: int | None) -> None:
    rng = random.Random(seed)
    hosts = make_hosts(hosts_n, rng)
    requests, seen = make_requests(placements, rng, run_length)
    start = time.perf_counter()
    plan = place(hosts, requests, now=0.0)
    seconds = time.perf_counter() - start
    result = {
        "hosts": hosts_n,
        "placements": placements,
        "placed": len(plan.placements),
        "seconds": round(seconds, 3),
        "per_second": round(placements / seconds),
        "constraints": [f"{name}: {count} requests" for name, count in seen.items()]
        + [f"host states: {sum(h.state != 'READY' for h in hosts)} hosts not READY"],
        "unplaced": len(plan.unplaced),
        "runs": "mixed jobs" if run_length is None else f"every run {run_length} long",
    }
    print(json.dumps(result))


def bench_small(seed: int) -> None:
    """Median microseconds per `place` call for small batches, per engine and size."""
    rng = random.Random(seed)
    rows = []
    for hosts_n in (1, 5, 10, 25, 50, 100):
        for batch in (1, 10, 50):
            hosts = make_hosts(hosts_n, rng)
            requests, _ = make_requests(batch, rng, None)
            timings = {}
            for name, engine in (
                ("python", _small.place_small),
                ("numpy", place_mod.place_table),
                ("place", lambda h, r: place(h, r, now=0.0)),
            ):
                samples = []
                for _ in range(30):
                    start = time.perf_counter()
                    engine(hosts, requests)
                    samples.append(time.perf_counter() - start)
                timings[name] = round(sorted(samples)[len(samples) // 2] * 1e6, 1)
            rows.append({"hosts": hosts_n, "requests": batch, "us": timings})
    print(json.dumps({"small_batches": rows, "small_cluster_cutoff": place_mod.SMALL_CLUSTER}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--placements", type=int, default=1000000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-length", type=int, default=None)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    if args.small:
        bench_small(args.seed)
    else:
        bench_large(args.hosts, args.placements, args.seed, args.run_length)


if __name__ == "__main__":
    main()
