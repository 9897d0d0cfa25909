"""Property tests: random clusters and batches always give sound plans, and both engines agree.

The numpy engine (`place_table`) must return exactly the plan of the pure-Python reference
(`place_small`), messages included; `replay` independently re-checks every placement and
that every unplaced request really had no host left.
"""

from __future__ import annotations

import dataclasses
import importlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellplane.scheduler import Affinity, HostSnapshot, PlacementRequest, Resources, explain
from cellplane.scheduler._small import place_small
from cellplane.scheduler._table import Table
from cellplane.scheduler.testing import replay

place_mod = importlib.import_module("cellplane.scheduler.place")

PORTS = [("tcp", 80), ("tcp", 443), ("udp", 53)]
GROUPS = ["g1", "g2", "g3"]


STANDARD_AND_SANDBOX = frozenset({"standard", "sandbox"})


@st.composite
def hosts_st(draw: st.DrawFn, max_hosts: int = 8) -> list[HostSnapshot]:
    n = draw(st.integers(0, max_hosts))
    out = []
    for i in range(n):
        cpu = draw(st.sampled_from([0.0, 1.0, 2.0, 4.0, 0.5, 3.3]))
        mem = draw(st.sampled_from([0, 1024, 2048, 4096]))
        disk = draw(st.sampled_from([0, 10, 50]))
        used = Resources(
            draw(st.sampled_from([0.0, 0.5, 1.0, 5.0])),
            draw(st.sampled_from([0, 512, 1024, 5000])),
            draw(st.sampled_from([0, 5, 60])),
        )
        out.append(
            HostSnapshot(
                id=draw(st.sampled_from(["h", "k", "a"])) + str(i),
                state=draw(st.sampled_from(["READY"] * 4 + ["DOWN", "SUSPECT", "MAINTENANCE"])),
                capacity=Resources(cpu, mem, disk),
                used=used,
                labels=draw(st.sampled_from([{}, {"gpu": "true"}, {"gpu": "false", "ssd": "1"}])),
                zone=draw(st.sampled_from([None, "z1", "z2"])),
                used_ports=frozenset(draw(st.lists(st.sampled_from(PORTS), max_size=2))),
                groups=draw(st.dictionaries(st.sampled_from(GROUPS), st.integers(0, 2))),
                isolation=draw(
                    st.sampled_from([frozenset({"standard"})] * 2 + [STANDARD_AND_SANDBOX])
                ),
            )
        )
    return out


@st.composite
def shape_st(draw: st.DrawFn) -> PlacementRequest:
    group = draw(st.sampled_from([None, *GROUPS]))
    zones = draw(st.sampled_from([None, frozenset({"z1"}), frozenset({"z1", "z2"}), frozenset()]))
    return PlacementRequest(
        id="",
        resources=Resources(
            draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 3.0])),
            draw(st.sampled_from([0, 256, 1024, 3000])),
            draw(st.sampled_from([0, 1, 10])),
        ),
        labels=draw(st.sampled_from([{}, {}, {"gpu": "true"}, {"ssd": "1"}])),
        ports=frozenset(draw(st.lists(st.sampled_from(PORTS), max_size=2))),
        group=group,
        max_per_host=draw(st.sampled_from([None, 1, 2])) if group else None,
        zones=zones,
        near=draw(st.sampled_from([None, None, *GROUPS])),
        near_strict=draw(st.booleans()),
        isolation=draw(st.sampled_from(["standard", "standard", "sandbox"])),
    )


@st.composite
def batch_st(draw: st.DrawFn) -> list[PlacementRequest]:
    """Runs of identical shapes (as the controller sends them), ids unique."""
    out: list[PlacementRequest] = []
    for shape in draw(st.lists(shape_st(), max_size=6)):
        for _ in range(draw(st.integers(1, 5))):
            out.append(
                PlacementRequest(
                    id=f"r{len(out)}",
                    resources=shape.resources,
                    labels=shape.labels,
                    ports=shape.ports,
                    group=shape.group,
                    max_per_host=shape.max_per_host,
                    zones=shape.zones,
                    near=shape.near,
                    near_strict=shape.near_strict,
                    isolation=shape.isolation,
                )
            )
    return out


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(hosts_st(), batch_st())
def test_plans_are_valid_and_engines_agree(
    hosts: list[HostSnapshot], requests: list[PlacementRequest]
) -> None:
    reference = place_small(hosts, requests)
    assert replay(hosts, requests, reference) == []
    assert place_mod.place_table(hosts, requests) == reference
    assert place_mod.place(hosts, requests, now=1.0) == reference


@FAST
@given(hosts_st(), shape_st())
def test_explain_is_none_exactly_when_a_host_fits(
    hosts: list[HostSnapshot], request: PlacementRequest
) -> None:
    reason = explain(hosts, request)
    assert Table(hosts).reason(request) == reason
    plan = place_small(hosts, [request])
    assert (reason is None) == (len(plan.placements) == 1)
    assert replay(hosts, [request], plan) == []


@settings(max_examples=40, deadline=None)
@given(hosts_st(max_hosts=3), shape_st(), st.integers(2, 60))
def test_long_runs_fill_hosts_in_greedy_order(
    hosts: list[HostSnapshot], shape: PlacementRequest, count: int
) -> None:
    # Long runs exercise the heap merge past the first turn on each host.
    requests = [
        PlacementRequest(
            id=f"r{i}",
            resources=shape.resources,
            labels=shape.labels,
            ports=shape.ports,
            group=shape.group,
            max_per_host=shape.max_per_host,
            zones=shape.zones,
            near=shape.near,
            near_strict=shape.near_strict,
        )
        for i in range(count)
    ]
    reference = place_small(hosts, requests)
    assert replay(hosts, requests, reference) == []
    assert place_mod.place_table(hosts, requests) == reference


CELL_LABELS = [{}, {"app": "web"}, {"app": "db"}, {"app": "web", "tier": "1"}]


@FAST
@given(hosts_st(), batch_st(), st.data())
def test_a_request_that_reads_no_placed_cell_gets_the_same_plan_without_them(
    hosts: list[HostSnapshot], requests: list[PlacementRequest], data: st.DataObject
) -> None:
    """The controller reads the placed cells' ports and labels only for a batch that needs
    them (`reads_placed_cells`): without ports and affinity the plan must not depend on them."""
    full = [
        dataclasses.replace(
            h, cells=tuple(data.draw(st.lists(st.sampled_from(CELL_LABELS), max_size=4)))
        )
        for h in hosts
    ]
    plain = [dataclasses.replace(r, ports=frozenset(), affinity=()) for r in requests]
    assert not any(r.reads_placed_cells() for r in plain)
    bare = [dataclasses.replace(h, used_ports=frozenset(), cells=()) for h in full]
    assert place_mod.place(bare, plain, now=1.0) == place_mod.place(full, plain, now=1.0)
    for r in plain[:1]:
        assert explain(bare, r) == explain(full, r)


def test_ports_or_affinity_make_a_request_read_the_placed_cells() -> None:
    base = PlacementRequest(id="r", resources=Resources(0.1, 16, 0))
    assert not base.reads_placed_cells()
    assert dataclasses.replace(base, ports=frozenset({("tcp", 80)})).reads_placed_cells()
    web = Affinity({"app": "web"}, anti=True, soft=False)
    assert dataclasses.replace(base, affinity=(web,)).reads_placed_cells()
    # The hosts' labels, groups and zones are read from the hosts, not from placed cells.
    assert not dataclasses.replace(
        base, labels={"gpu": "true"}, zones=frozenset({"z1"}), near="g1"
    ).reads_placed_cells()
