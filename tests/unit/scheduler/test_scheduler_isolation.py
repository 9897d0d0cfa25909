"""Isolation classes in the scheduler: a request goes only to a host offering its class, and the
reason says so when none does (both engines, same words)."""

from __future__ import annotations

from collections.abc import Sequence

from cellplane.scheduler import HostSnapshot, PlacementRequest, explain, place
from cellplane.scheduler._table import Table
from cellplane.scheduler.place import place_table
from cellplane.scheduler.testing import assert_plan_valid, host, request, requests

SANDBOX = ("standard", "sandbox")


def reasons(hosts: Sequence[HostSnapshot], r: PlacementRequest) -> str | None:
    """explain() with both engines, which must agree; place() must report the same text."""
    small = explain(hosts, r)
    assert Table(hosts).reason(r) == small
    plan = place(hosts, [r], now=0.0)
    assert_plan_valid(hosts, [r], plan)
    if small is not None:
        assert plan.unplaced[0].reason == small
    return small


def test_a_sandboxed_request_goes_only_to_a_host_offering_the_class() -> None:
    # The standard host is emptier (it would win on spread), but does not offer the sandbox.
    hosts = [host("a", cpu=64, memory_mb=65536), host("b", isolation=SANDBOX)]
    plan = place(hosts, [request("r", isolation="sandbox")], now=0.0)
    assert [p.host_id for p in plan.placements] == ["b"]
    assert_plan_valid(hosts, [request("r", isolation="sandbox")], plan)


def test_a_host_without_the_sandbox_is_never_chosen_even_for_a_run() -> None:
    hosts = [host(f"std{i}") for i in range(60)] + [host("gv", isolation=SANDBOX)]
    batch = requests("n", 5, isolation="sandbox", cpu=0.5, memory_mb=256)
    for plan in (place(hosts, batch, now=0.0), place_table(hosts, batch)):
        assert {p.host_id for p in plan.placements} == {"gv"}
        assert_plan_valid(hosts, batch, plan)


def test_standard_requests_still_go_anywhere() -> None:
    hosts = [host("a", isolation=SANDBOX), host("b")]
    assert reasons(hosts, request("r")) is None


def test_the_reason_names_the_class_and_what_to_do() -> None:
    hosts = [host("a"), host("b"), host("c", state="DOWN", isolation=SANDBOX)]
    reason = reasons(hosts, request("r", isolation="sandbox"))
    assert reason is not None
    assert reason.startswith("no host offers isolation class sandbox: none of 2 READY hosts")
    assert "install runsc" in reason
    one = reasons([host("a")], request("r", isolation="sandbox"))
    assert one is not None and "the READY host offers it" not in one
    assert "the READY host does not offer it" in one


def test_the_class_is_checked_before_labels_and_resources() -> None:
    hosts = [host("a", cpu=1), host("b", cpu=1, isolation=SANDBOX, labels={"ssd": "1"})]
    r = request("r", isolation="sandbox", labels={"gpu": "true"}, cpu=4)
    assert reasons(hosts, r) == "no host carries labels gpu=true"
    r = request("r", isolation="sandbox", cpu=4)
    reason = reasons(hosts, r)
    assert reason is not None and reason.startswith("needs 4 cpu, the largest free host has 1.0")
