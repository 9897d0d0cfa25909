"""The simulated hosts' agent logic (`cellplane.testing.simhosts.SimHost`), without a server.

What a simulated host sends must be what the server reads from an agent: each report is read
with the server's own models (`wire.agent`), and the assignments it takes are read with the
agent's reader (`wire.agent_plain`), from the JSON the server would send.
"""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.testing.simhosts import SimHost, SimSpec, host_names
from cellplane.wire import agent as server_wire
from cellplane.wire import agent_plain as wire

NOW = 1_800_000_000.0


def cell(cid: str, desired: str = "RUNNING", generation: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "cell_id": cid,
        "name": f"n-{cid}",
        "project_id": "prj-1",
        "network": {"name": "cp-prj-1", "subnet": "10.128.0.0/20"},
        "image": {"id": "img-1", "kind": "oci", "engine_ref": "localhost/busybox"},
        "cpu": 0.01,
        "memory_mb": 16,
        "desired_state": desired,
        "generation": generation,
        **kw,
    }


def assignments(revision: int, cells: list[dict[str, Any]], full: bool) -> wire.Assignments:
    body = {"api_version": "agent/v1", "revision": revision, "full": full, "cells": cells}
    return wire.parse(wire.Assignments, body)


def server_reads(items: list[dict[str, Any]]) -> list[Any]:
    """The items as the server reads a status report (pydantic, `wire.agent`)."""
    body = {"api_version": "agent/v1", "cells": items}
    return list(server_wire.parse(server_wire.StatusReport, body).cells)


def joined(name: str = "sim-00000") -> SimHost:
    h = SimHost(name)
    h.host_id = "hst-1"
    return h


def test_full_view_runs_every_cell_and_reports_it_running_with_its_events() -> None:
    h = joined()
    items = h.apply(assignments(3, [cell("cel-a"), cell("cel-b")], full=True), NOW)
    read = server_reads(items)
    reports = {r.cell_id: r for r in read if isinstance(r, server_wire.CellReport)}
    assert set(reports) == {"cel-a", "cel-b"}
    for r in reports.values():
        assert r.state == "RUNNING"
        assert r.container_id and r.address and r.generation == 1
        assert [e.type for e in r.events] == ["image-ready", "created", "started"]
    # Nothing else runs here: the host says it acted on the full view of revision 3.
    assert [r.fenced for r in read if isinstance(r, server_wire.FenceReport)] == [3]
    assert h.running() == 2


def test_unchanged_truth_is_not_sent_twice() -> None:
    h = joined()
    h.apply(assignments(3, [cell("cel-a")], full=True), NOW)
    assert h.apply(assignments(4, [cell("cel-a")], full=False), NOW + 1) == []


def test_stop_then_delete_follow_the_desired_state() -> None:
    h = joined()
    h.apply(assignments(3, [cell("cel-a"), cell("cel-b")], full=True), NOW)
    stopped = server_reads(h.apply(assignments(4, [cell("cel-a", "STOPPED")], full=False), NOW))
    assert [(r.cell_id, r.state, [e.type for e in r.events]) for r in stopped] == [
        ("cel-a", "STOPPED", ["stopped"])
    ]
    gone = server_reads(h.apply(assignments(5, [cell("cel-b", "DELETED")], full=False), NOW))
    assert [(r.cell_id, r.removed) for r in gone] == [("cel-b", True)]
    assert "cel-b" not in h.containers and h.running() == 0


def test_a_new_generation_replaces_the_stale_container_in_one_answer() -> None:
    h = joined()
    h.apply(assignments(3, [cell("cel-a")], full=True), NOW)
    old = h.containers["cel-a"].id
    items = server_reads(h.apply(assignments(6, [cell("cel-a", generation=2)], full=True), NOW))
    new = h.containers["cel-a"]
    assert new.id != old and new.labels["cellplane.generation"] == "2"
    assert any(isinstance(r, server_wire.CellReport) and r.generation == 2 for r in items)


def test_a_full_view_without_a_cell_removes_its_container_before_fencing() -> None:
    h = joined()
    h.apply(assignments(3, [cell("cel-a"), cell("cel-b")], full=True), NOW)
    items = server_reads(h.apply(assignments(7, [cell("cel-a")], full=True), NOW))
    assert set(h.containers) == {"cel-a"}
    assert [r.fenced for r in items if isinstance(r, server_wire.FenceReport)] == [7]


def test_a_delta_never_removes_what_it_does_not_name() -> None:
    h = joined()
    h.apply(assignments(3, [cell("cel-a"), cell("cel-b")], full=True), NOW)
    h.apply(assignments(4, [cell("cel-c")], full=False), NOW)
    assert set(h.containers) == {"cel-a", "cel-b", "cel-c"}


def test_registration_is_a_valid_register_request() -> None:
    spec = SimSpec(server="http://127.0.0.1:1", join_token="t", count=3, zones=2)
    body = SimHost("sim-00001", index=1).register_request(spec)
    req = server_wire.parse(server_wire.RegisterRequest, body)
    assert req.name == "sim-00001" and req.zone == "z1" and req.capacity is not None
    assert req.capacity.cpu == spec.cpu and req.isolation == ["standard"]


def test_hosts_are_dealt_to_the_processes_without_empty_shares() -> None:
    spec = SimSpec(server="http://x", join_token="t", count=5, processes=2)
    assert host_names(spec) == [
        ["sim-00000", "sim-00002", "sim-00004"],
        ["sim-00001", "sim-00003"],
    ]
    one = SimSpec(server="http://x", join_token="t", count=1, processes=4)
    assert host_names(one) == [["sim-00000"]]


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({"count": 0}, "count"),
        ({"processes": 0}, "processes"),
        ({"server": "127.0.0.1:80"}, "server"),
        ({"join_token": ""}, "join token"),
        ({"cpu": 0}, "cpu"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_problem(kw: dict[str, Any], names: str) -> None:
    base: dict[str, Any] = {"server": "http://127.0.0.1:1", "join_token": "t", "count": 1}
    with pytest.raises(ValueError, match=names):
        SimSpec(**{**base, **kw})
