"""The scheduler's heap path for runs of alike requests (`_small._place_run`, a service's batch)
gives the per-request scan's plan, placement for placement, and is fast on 1,000 hosts."""

from __future__ import annotations

import dataclasses
import random

import pytest

from cellplane import scheduler
from cellplane.scheduler import _small


def _hosts(rng: random.Random) -> list[scheduler.HostSnapshot]:
    return [
        scheduler.HostSnapshot(
            id=f"h{i:02d}",
            state=rng.choice(["READY", "READY", "READY", "DOWN"]),
            capacity=scheduler.Resources(
                rng.choice([1, 2, 4]), rng.choice([1024, 2048, 4096]), rng.choice([0, 10, 100])
            ),
            used=scheduler.Resources(rng.choice([0, 0.5, 1]), rng.choice([0, 512]), 0),
            labels={"rack": rng.choice("ab")},
            zone=rng.choice(["z1", "z2", None]),
            cells=tuple({"app": rng.choice("xy")} for _ in range(rng.randint(0, 3))),
            groups={"g": rng.randint(0, 2)},
        )
        for i in range(rng.randint(1, 30))
    ]


def _requests(rng: random.Random) -> list[scheduler.PlacementRequest]:
    out: list[scheduler.PlacementRequest] = []
    for k in range(rng.randint(1, 60)):
        if out and rng.random() < 0.85:  # runs of alike requests, as a service's batch
            out.append(dataclasses.replace(out[-1], id=f"r{k}"))
            continue
        affinity = tuple(
            scheduler.Affinity({"app": rng.choice("xy")}, anti=rng.random() < 0.5, soft=soft)
            for soft in (rng.random() < 0.8 for _ in range(rng.randint(0, 2)))
        )
        group = "g" if rng.random() < 0.4 else None
        out.append(
            scheduler.PlacementRequest(
                id=f"r{k}",
                resources=scheduler.Resources(
                    rng.choice([0.1, 0.5, 1]), rng.choice([64, 256, 1024]), rng.choice([0, 5])
                ),
                labels={"rack": "a"} if rng.random() < 0.2 else {},
                ports=frozenset({("tcp", 80)}) if rng.random() < 0.2 else frozenset(),
                group=group,
                max_per_host=2 if group and rng.random() < 0.5 else None,
                near="g" if rng.random() < 0.2 else None,
                near_strict=rng.random() < 0.5,
                policy=rng.choice([scheduler.SPREAD, scheduler.BINPACK]),
                cell_labels={"app": rng.choice("xy")},
                affinity=affinity,
            )
        )
    return out


@pytest.mark.parametrize("seed", range(8))
def test_runs_are_placed_as_the_scan_places_them(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        hosts, requests = _hosts(rng), _requests(rng)
        with_runs = _small.place_small(hosts, requests)
        with monkeypatch.context() as m:
            m.setattr(_small, "RUN_MIN", len(requests) + 1)  # every request scanned
            scanned = _small.place_small(hosts, requests)
        assert with_runs == scanned


def test_a_service_batch_on_a_thousand_hosts_spreads_one_per_host() -> None:
    hosts = [
        scheduler.HostSnapshot(
            id=f"h{i:04d}",
            state="READY",
            capacity=scheduler.Resources(64, 262144, 2000),
            used=scheduler.Resources(0, 0, 0),
        )
        for i in range(1000)
    ]
    spread = scheduler.Affinity({"cellplane.service": "svc-1"}, anti=True, soft=True)
    base = scheduler.PlacementRequest(
        id="",
        resources=scheduler.Resources(0.01, 16, 0),
        cell_labels={"cellplane.service": "svc-1"},
        affinity=(spread,),
    )
    plan = scheduler.place(
        hosts, [dataclasses.replace(base, id=f"c{i}") for i in range(2000)], now=0
    )
    per_host = {p.host_id for p in plan.placements[:1000]}
    assert len(per_host) == 1000 and not plan.unplaced
    assert {p.host_id for p in plan.placements[1000:]} == per_host
