"""Batch accounting, scoring, determinism and the public surface of `cellplane.scheduler`."""

from __future__ import annotations

import importlib
import random

import cellplane.scheduler as scheduler
from cellplane.scheduler import HostSnapshot, Plan, place
from cellplane.scheduler._small import place_small
from cellplane.scheduler.testing import assert_plan_valid, host, replay, request, requests

place_mod = importlib.import_module("cellplane.scheduler.place")


def hosts_of(plan: Plan) -> list[str]:
    return [p.host_id for p in plan.placements]


def test_public_names() -> None:
    assert sorted(scheduler.__all__) == [
        "Affinity",
        "BINPACK",
        "HostSnapshot",
        "ISOLATION_CLASSES",
        "POLICIES",
        "Placement",
        "PlacementRequest",
        "Plan",
        "Resources",
        "SPREAD",
        "Unplaced",
        "explain",
        "place",
    ]


def test_spread_alternates_equal_hosts_and_ties_go_to_the_smaller_id() -> None:
    hs = [host("b"), host("a")]
    plan = place(hs, requests("r", 4), now=0.0)
    assert hosts_of(plan) == ["a", "b", "a", "b"]


def test_spread_scores_share_after_placement_on_unequal_hosts() -> None:
    # big: (2+1)/8 cpu, small: 1/2 cpu after placement; memory shares equal.
    hs = [host("big", cpu=8, used=(2, 0, 0)), host("small", cpu=2, memory_mb=16384)]
    assert hosts_of(place(hs, [request("r")], now=0.0)) == ["big"]


def test_memory_weighs_like_cpu() -> None:
    hs = [host("a", used=(0, 8192, 0)), host("b", used=(4, 0, 0))]
    # a: 1/8 + 9216/16384 = 0.6875 ; b: 5/8 + 1024/16384 = 0.6875 -> tie -> a.
    assert hosts_of(place(hs, [request("r")], now=0.0)) == ["a"]
    hs = [host("a", used=(0, 8193, 0)), host("b", used=(4, 0, 0))]
    assert hosts_of(place(hs, [request("r")], now=0.0)) == ["b"]


def test_capacity_is_consumed_within_the_batch() -> None:
    hs = [host("a", cpu=2)]
    plan = place(hs, requests("r", 3), now=0.0)
    assert hosts_of(plan) == ["a", "a"]
    assert [(u.request_id, u.reason) for u in plan.unplaced] == [
        ("r-2", "needs 1 cpu, the largest free host has 0.0")
    ]


def test_ports_are_consumed_within_the_batch() -> None:
    hs = [host("a"), host("b")]
    plan = place(hs, requests("web", 3, ports=[("tcp", 80)]), now=0.0)
    assert hosts_of(plan) == ["a", "b"]
    assert plan.unplaced[0].reason == "host port tcp/80 is taken on every candidate host"
    # Another protocol or port is unaffected.
    other = [request("dns", ports=[("udp", 80)])]
    assert hosts_of(place(hs, requests("web", 2, ports=[("tcp", 80)]) + other, now=0.0)) == [
        "a",
        "b",
        "a",
    ]


def test_group_counts_are_consumed_within_the_batch() -> None:
    hs = [host("a", groups={"g": 1}), host("b"), host("c")]
    plan = place(hs, requests("n", 3, group="g", max_per_host=1), now=0.0)
    assert hosts_of(plan) == ["b", "c"]
    assert plan.unplaced[0].reason == "instancePerHost 1 for group g: 3 hosts hold members"
    two = place(hs, requests("n", 5, group="g", max_per_host=2), now=0.0)
    assert sorted(hosts_of(two)) == ["a", "b", "b", "c", "c"]


def test_strict_near_follows_members_placed_earlier_in_the_batch() -> None:
    hs = [host("a"), host("b", used=(1, 0, 0))]
    batch = [request("db", group="db"), request("app", near="db", near_strict=True)]
    assert hosts_of(place(hs, batch, now=0.0)) == ["a", "a"]


def test_weak_near_prefers_but_does_not_require() -> None:
    hs = [host("a", used=(4, 4096, 0), groups={"db": 1}), host("b")]
    assert hosts_of(place(hs, [request("r", near="db")], now=0.0)) == ["a"]
    # Too full for the request: the bonus cannot override capacity.
    hs = [host("a", used=(7.5, 0, 0), groups={"db": 1}), host("b")]
    assert hosts_of(place(hs, [request("r", near="db")], now=0.0)) == ["b"]
    # No host holds the group: plain spread.
    assert hosts_of(
        place([host("a", used=(1, 0, 0)), host("b")], [request("r", near="x")], now=0.0)
    ) == ["b"]


def test_weak_near_on_its_own_group_packs_members_together() -> None:
    hs = [host(f"h{i}") for i in range(60)]
    batch = requests("r", 5, group="g", near="g")
    plan = place(hs, batch, now=0.0)
    assert hosts_of(plan) == ["h0"] * 5
    assert place_small(hs, batch) == plan


def test_determinism_and_host_order_independence() -> None:
    rng = random.Random(7)
    hs = [
        host(f"h{i:03d}", cpu=rng.choice([2, 4, 8]), zone=rng.choice(["z1", "z2"]))
        for i in range(120)
    ]
    batch = (
        requests("a", 40, group="a", max_per_host=1)
        + requests("b", 30, cpu=0.5, zones=["z1"])
        + requests("c", 10, ports=[("tcp", 80)], near="a")
    )
    first = place(hs, batch, now=0.0)
    shuffled = hs[:]
    rng.shuffle(shuffled)
    assert place(shuffled, batch, now=99.0) == first
    assert_plan_valid(hs, batch, first)
    assert len(first.placements) == len(batch)


def test_large_cluster_engine_matches_the_reference() -> None:
    rng = random.Random(3)
    hs: list[HostSnapshot] = []
    for i in range(200):
        cpu = rng.choice([4.0, 8.0, 16.0])
        hs.append(
            host(
                f"h{i:03d}",
                cpu=cpu,
                memory_mb=int(cpu * 2048),
                used=(rng.choice([0.0, 1.0, 2.5]), rng.choice([0, 2048]), 0),
                labels={"ssd": "true"} if rng.random() < 0.3 else {},
                zone=f"z{i % 4}",
                state="READY" if rng.random() < 0.95 else "DOWN",
                groups={"db": 1} if rng.random() < 0.05 else {},
            )
        )
    batch = []
    for j in range(60):
        batch += requests(
            f"j{j}",
            rng.randint(1, 40),
            cpu=rng.choice([0.25, 0.5, 1.0, 2.0]),
            memory_mb=rng.choice([256, 1024, 4096]),
            labels={"ssd": "true"} if rng.random() < 0.2 else None,
            zones=["z1", "z2"] if rng.random() < 0.2 else None,
            group=f"j{j}",
            max_per_host=rng.choice([None, 1, 3]),
            ports=[("tcp", 8000 + j % 3)] if rng.random() < 0.1 else (),
            near="db" if rng.random() < 0.1 else None,
        )
    plan = place(hs, batch, now=0.0)
    assert replay(hs, batch, plan) == []
    assert plan == place_small(hs, batch)
    assert plan.unplaced, "the batch is sized to overflow the cluster"


def test_explain_does_not_change_the_snapshot() -> None:
    hs = [host("a", cpu=2, groups={"g": 1}, ports=[("tcp", 80)])]
    before = repr(hs)
    assert scheduler.explain(hs, request("r", group="g", max_per_host=2)) is None
    assert place(hs, requests("r", 2, group="g"), now=0.0).placements
    assert repr(hs) == before
