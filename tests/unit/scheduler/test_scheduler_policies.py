"""Placement policies (spread, binpack) and cell affinity / anti-affinity, hard and soft."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellplane.scheduler import (
    Affinity,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Plan,
    explain,
    place,
)
from cellplane.scheduler.testing import assert_plan_valid, host, replay, request, requests

WEB = {"app": "web"}
DB = {"app": "db"}


def hosts_of(plan: Plan) -> list[str]:
    return [p.host_id for p in plan.placements]


# --- spread and binpack -------------------------------------------------------------------


def test_binpack_fills_the_fullest_host_that_fits_before_the_next() -> None:
    hs = [host("a"), host("b", used=(2.0, 4096, 0)), host("c")]
    reqs = requests("r", 8, cpu=1.0, memory_mb=2048, policy="binpack")
    plan = place(hs, reqs, now=0.0)
    # b is the fullest: it takes cells until it is full (8 cpu, 16 GB), then a (smaller id).
    assert hosts_of(plan) == ["b"] * 6 + ["a", "a"]
    assert_plan_valid(hs, reqs, plan)


def test_spread_is_the_default_and_balances() -> None:
    hs = [host("a"), host("b", used=(2.0, 4096, 0)), host("c")]
    plan = place(hs, requests("r", 3), now=0.0)
    assert hosts_of(plan) == ["a", "c", "a"]


def test_policies_mix_in_one_batch_per_request() -> None:
    hs = [host("a"), host("b")]
    reqs = [
        request("s1"),
        request("p1", policy="binpack"),
        request("s2"),
    ]
    plan = place(hs, reqs, now=0.0)
    assert hosts_of(plan) == ["a", "a", "b"]


def test_binpack_never_overcommits() -> None:
    hs = [host("a", cpu=2.0, memory_mb=2048), host("b", cpu=2.0, memory_mb=2048)]
    reqs = requests("r", 5, cpu=1.0, memory_mb=1024, policy="binpack")
    plan = place(hs, reqs, now=0.0)
    assert hosts_of(plan) == ["a", "a", "b", "b"]
    assert [u.request_id for u in plan.unplaced] == ["r-4"]
    assert "needs 1 cpu" in plan.unplaced[0].reason
    assert_plan_valid(hs, reqs, plan)


def test_unknown_policy_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="policy must be one of spread, binpack, got 'pack'"):
        request("r", policy="pack")


def test_binpack_takes_the_python_engine_even_on_a_big_cluster() -> None:
    hs = [host(f"h{i:03d}") for i in range(200)]
    reqs = requests("r", 40, policy="binpack")
    plan = place(hs, reqs, now=0.0)
    assert set(hosts_of(plan)) == {"h000", "h001", "h002", "h003", "h004"}
    assert_plan_valid(hs, reqs, plan)


# --- hard affinity and anti-affinity --------------------------------------------------------


def test_hard_anti_affinity_puts_replicas_on_distinct_hosts_then_refuses() -> None:
    anti = Affinity(WEB, anti=True)
    hs = [host("a"), host("b"), host("c")]
    reqs = requests("w", 4, cell_labels=WEB, affinity=[anti], policy="binpack")
    plan = place(hs, reqs, now=0.0)
    assert sorted(hosts_of(plan)) == ["a", "b", "c"]
    assert plan.unplaced[0].reason == (
        "every candidate host runs a cell matching app=web (anti-affinity)"
    )
    assert_plan_valid(hs, reqs, plan)


def test_hard_anti_affinity_sees_cells_already_running() -> None:
    hs = [host("a", cells=[WEB]), host("b", cells=[DB])]
    plan = place(hs, [request("w", cell_labels=WEB, affinity=[Affinity(WEB, anti=True)])], now=0.0)
    assert hosts_of(plan) == ["b"]


def test_hard_affinity_follows_the_cells_it_selects() -> None:
    hs = [host("a"), host("b", used=(6.0, 12000, 0), cells=[DB]), host("c")]
    plan = place(hs, [request("app", affinity=[Affinity(DB)])], now=0.0)
    assert hosts_of(plan) == ["b"]  # the fuller host, because the db runs there


def test_hard_affinity_with_nothing_to_follow_is_refused_naming_the_selector() -> None:
    hs = [host("a"), host("b")]
    r = request("app", affinity=[Affinity(DB)])
    plan = place(hs, [r], now=0.0)
    assert plan.unplaced[0].reason == "no candidate host runs a cell matching app=db (affinity)"
    assert explain(hs, r) == plan.unplaced[0].reason


def test_hard_affinity_on_its_own_group_lets_the_first_member_go_anywhere() -> None:
    together = Affinity({"tier": "cache"})
    hs = [host("a", used=(4.0, 0, 0)), host("b")]
    reqs = requests("c", 3, cell_labels={"tier": "cache"}, affinity=[together])
    plan = place(hs, reqs, now=0.0)
    assert hosts_of(plan) == ["b", "b", "b"]  # first by spread, the rest follow it
    assert_plan_valid(hs, reqs, plan)


def test_affinity_on_a_down_host_cell_does_not_reach_the_down_host() -> None:
    hs = [host("a", state="DOWN", cells=[DB]), host("b")]
    r = request("app", affinity=[Affinity(DB)])
    assert explain(hs, r) == "no candidate host runs a cell matching app=db (affinity)"


def test_affinity_comes_after_zones_and_before_resources_in_the_reason() -> None:
    hs = [host("a", cpu=1.0, cells=[DB]), host("b")]
    r = request("app", cpu=2.0, affinity=[Affinity(DB)])
    assert explain(hs, r) == "needs 2 cpu, the largest free host has 1.0"


def test_a_selector_matches_only_cells_carrying_every_label() -> None:
    a = Affinity({"app": "web", "env": "prod"})
    assert a.matches({"app": "web", "env": "prod", "x": "1"})
    assert not a.matches({"app": "web"})
    assert a.count([{"app": "web", "env": "prod"}, {"app": "web"}]) == 1
    assert a.describe() == "app=web,env=prod"


def test_an_empty_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one label"):
        Affinity({})


# --- soft terms -----------------------------------------------------------------------------


def test_soft_anti_affinity_spreads_replicas_but_shares_hosts_when_it_must() -> None:
    soft = Affinity(WEB, anti=True, soft=True)
    hs = [host("a"), host("b")]
    reqs = requests("w", 4, cell_labels=WEB, affinity=[soft], policy="binpack")
    plan = place(hs, reqs, now=0.0)
    # binpack alone would stack all four on a; the preference alternates them.
    assert hosts_of(plan) == ["a", "b", "a", "b"]
    assert not plan.unplaced


def test_soft_affinity_prefers_but_does_not_require() -> None:
    soft = Affinity(DB, soft=True)
    with_db = [host("a"), host("b", used=(4.0, 8192, 0), cells=[DB])]
    assert hosts_of(place(with_db, [request("x", affinity=[soft])], now=0.0)) == ["b"]
    full = [host("a"), host("b", cpu=1.0, cells=[DB])]
    assert hosts_of(place(full, [request("x", cpu=2.0, affinity=[soft])], now=0.0)) == ["a"]


def test_hard_terms_beat_soft_ones() -> None:
    hs = [host("a", cells=[DB]), host("b")]
    r = request("x", affinity=[Affinity(DB, soft=True), Affinity({"app": "x"}, anti=True)])
    assert hosts_of(place(hs, [r], now=0.0)) == ["a"]
    r2 = request("y", affinity=[Affinity(DB, soft=True), Affinity(DB, anti=True)])
    assert hosts_of(place(hs, [r2], now=0.0)) == ["b"]


# --- the checker sees broken plans ------------------------------------------------------------


def test_replay_reports_a_plan_that_breaks_anti_affinity() -> None:
    hs = [host("a", cells=[WEB]), host("b")]
    reqs = [request("w", cell_labels=WEB, affinity=[Affinity(WEB, anti=True)])]
    problems = replay(hs, reqs, Plan((Placement("w", "a"),), ()))
    assert problems == ["w: host a runs a cell matching {'app': 'web'} (anti-affinity)"]


# --- properties ------------------------------------------------------------------------------

SELECTORS = [WEB, DB, {"tier": "x"}]


@st.composite
def cluster(draw: st.DrawFn) -> tuple[list[HostSnapshot], list[PlacementRequest]]:
    n = draw(st.integers(1, 6))
    hs = [
        host(
            f"h{i}",
            cpu=draw(st.sampled_from([1.0, 2.0, 4.0])),
            memory_mb=draw(st.sampled_from([1024, 4096])),
            state=draw(st.sampled_from(["READY", "READY", "READY", "DOWN"])),
            cells=draw(st.lists(st.sampled_from(SELECTORS), max_size=3)),
        )
        for i in range(n)
    ]
    reqs = []
    for i in range(draw(st.integers(0, 12))):
        terms = [
            Affinity(draw(st.sampled_from(SELECTORS)), anti=draw(st.booleans()), soft=soft)
            for soft in draw(st.lists(st.booleans(), max_size=2))
        ]
        reqs.append(
            request(
                f"r{i}",
                cpu=draw(st.sampled_from([0.5, 1.0])),
                memory_mb=draw(st.sampled_from([256, 1024])),
                disk_gb=0,
                policy=draw(st.sampled_from(["spread", "binpack"])),
                cell_labels=draw(st.sampled_from([{}, *SELECTORS])),
                affinity=terms,
            )
        )
    return hs, reqs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster())
def test_plans_with_policies_and_affinity_are_sound(
    data: tuple[list[HostSnapshot], list[PlacementRequest]],
) -> None:
    hs, reqs = data
    plan = place(hs, reqs, now=0.0)
    assert replay(hs, reqs, plan) == []
    if reqs:
        # explain agrees with the plan for the first request (nothing placed before it).
        first = reqs[0]
        refused = {u.request_id: u.reason for u in plan.unplaced}
        assert explain(hs, first) == refused.get(first.id)
