"""Every constraint, alone and combined, with the exact reason text a human reads."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cellplane.scheduler import HostSnapshot, PlacementRequest, explain, place
from cellplane.scheduler._table import Table
from cellplane.scheduler.testing import assert_plan_valid, host, request


def reasons(hosts: Sequence[HostSnapshot], r: PlacementRequest) -> str | None:
    """explain() with both engines, which must agree; place() must report the same text."""
    small = explain(hosts, r)
    assert Table(hosts).reason(r) == small
    plan = place(hosts, [r], now=0.0)
    assert_plan_valid(hosts, [r], plan)
    if small is None:
        assert len(plan.placements) == 1
    else:
        assert plan.unplaced[0].reason == small
    return small


def test_no_hosts() -> None:
    assert reasons([], request("r")) == "no hosts are registered"


def test_no_ready_host_counts_states() -> None:
    hosts = [host("a", state="MAINTENANCE"), host("b", state="DOWN")]
    assert reasons(hosts, request("r")) == "no host is READY (1 in MAINTENANCE, 1 DOWN)"
    hosts.append(host("c", state="DOWN"))
    hosts.append(host("d", state="SUSPECT"))
    assert reasons(hosts, request("r")) == "no host is READY (1 in MAINTENANCE, 2 DOWN, 1 SUSPECT)"


def test_only_ready_hosts_take_work() -> None:
    hosts = [host("a", state="SUSPECT"), host("b", cpu=2)]
    plan = place(hosts, [request("r")], now=0.0)
    assert [p.host_id for p in plan.placements] == ["b"]


def test_labels() -> None:
    hosts = [host("a", labels={"gpu": "false"}), host("b")]
    r = request("r", labels={"gpu": "true"})
    assert reasons(hosts, r) == "no host carries labels gpu=true"
    hosts.append(host("c", labels={"gpu": "true", "ssd": "yes"}))
    assert reasons(hosts, r) is None
    two = request("r", labels={"ssd": "yes", "gpu": "true", "arch": "arm"})
    assert reasons(hosts, two) == "no host carries labels arch=arm, gpu=true, ssd=yes"


def test_zones() -> None:
    hosts = [host("a", zone="rack2"), host("b")]
    assert reasons(hosts, request("r", zones=["rack1"])) == "no host in zones {rack1}"
    assert reasons(hosts, request("r", zones=["rack3", "rack1"])) == (
        "no host in zones {rack1, rack3}"
    )
    assert reasons(hosts, request("r", zones=["rack2"])) is None
    gpu = request("r", zones=["rack1"], labels={"gpu": "true"})
    hosts.append(host("c", zone="rack2", labels={"gpu": "true"}))
    assert reasons(hosts, gpu) == "no host carrying labels gpu=true is in zones {rack1}"


def test_strict_near_needs_a_member_weak_does_not() -> None:
    hosts = [host("a", groups={"db": 0}), host("b", groups={"web": 2})]
    strict = request("r", near="db", near_strict=True)
    assert reasons(hosts, strict) == (
        "no candidate host holds a member of group db (STRICT association)"
    )
    assert reasons(hosts, request("r", near="db")) is None
    hosts.append(host("c", groups={"db": 1}, cpu=2))
    plan = place(hosts, [strict], now=0.0)
    assert [p.host_id for p in plan.placements] == ["c"]


@pytest.mark.parametrize(
    ("r", "expected"),
    [
        (request("r", cpu=4), "needs 4 cpu, the largest free host has 2.0"),
        (request("r", cpu=2.5), "needs 2.5 cpu, the largest free host has 2.0"),
        (
            request("r", cpu=1, memory_mb=4096),
            "needs 4096 MB memory, the largest free host has 2048 MB",
        ),
        (
            request("r", cpu=1, memory_mb=1, disk_gb=60),
            "needs 60 GB disk, the largest free host has 50 GB",
        ),
    ],
)
def test_resources_name_the_short_dimension(r: PlacementRequest, expected: str) -> None:
    hosts = [
        host("a", cpu=2, memory_mb=2048, disk_gb=50),
        host("b", cpu=4, memory_mb=4096, disk_gb=50, used=(2.5, 2048, 0)),
    ]
    assert reasons(hosts, r) == expected


def test_resources_say_when_an_earlier_dimension_narrowed_the_field() -> None:
    hosts = [host("a", cpu=8, memory_mb=1024), host("b", cpu=1, memory_mb=8192)]
    r = request("r", cpu=4, memory_mb=4096)
    assert reasons(hosts, r) == (
        "needs 4096 MB memory, the largest free host has 1024 MB (among hosts with enough cpu)"
    )


def test_resources_account_used_capacity_and_overcommit() -> None:
    full = host("a", cpu=4, memory_mb=1000, used=(4.5, 0, 0))
    assert reasons([full], request("r", cpu=0.5, memory_mb=1)) == (
        "needs 0.5 cpu, the largest free host has 0.0"
    )
    exact = host("a", cpu=1, memory_mb=1000, disk_gb=10)
    assert reasons([exact], request("r", cpu=1, memory_mb=1000, disk_gb=10)) is None


def test_fractional_cpu_is_exact() -> None:
    # Float sums of 0.1 overshoot 1.0; millicore accounting fits exactly ten.
    hosts = [host("a", cpu=1, memory_mb=1000, disk_gb=10)]
    rs = [request(f"r{i}", cpu=0.1, memory_mb=1, disk_gb=0) for i in range(11)]
    plan = place(hosts, rs, now=0.0)
    assert len(plan.placements) == 10
    assert plan.unplaced[0].reason == "needs 0.1 cpu, the largest free host has 0.0"


def test_ports() -> None:
    hosts = [host("a", ports=[("tcp", 8080)]), host("b", ports=[("tcp", 8080), ("udp", 53)])]
    assert reasons(hosts, request("r", ports=[("tcp", 8080)])) == (
        "host port tcp/8080 is taken on every candidate host"
    )
    assert reasons(hosts, request("r", ports=[("udp", 8080)])) is None
    both = request("r", ports=[("tcp", 9090), ("udp", 53)])
    hosts = [host("a", ports=[("tcp", 9090)]), host("b", ports=[("udp", 53)])]
    assert (
        reasons(hosts, both) == "host ports tcp/9090, udp/53 are not all free on any candidate host"
    )


def test_instance_per_host() -> None:
    hosts = [host(h, groups={"g": 1}) for h in "abc"]
    r = request("r", group="g", max_per_host=1)
    assert reasons(hosts, r) == "instancePerHost 1 for group g: 3 hosts hold members"
    assert reasons(hosts[:1], r) == "instancePerHost 1 for group g: 1 host holds members"
    assert reasons(hosts, request("r", group="g", max_per_host=2)) is None
    assert reasons(hosts, request("r", group="other", max_per_host=1)) is None


def test_reason_names_the_constraint_that_removed_the_last_candidates() -> None:
    hosts = [
        host("a", cpu=1, labels={"gpu": "true"}, zone="z1"),
        host("b", cpu=16, labels={"gpu": "true"}, zone="z2", ports=[("tcp", 80)]),
        host("c", cpu=16, zone="z1"),
    ]
    r = request("r", cpu=4, labels={"gpu": "true"})
    # b has the cpu but publishes the port; a is free but too small.
    assert reasons(hosts, request("x", cpu=4, labels={"gpu": "true"}, ports=[("tcp", 80)])) == (
        "host port tcp/80 is taken on every candidate host"
    )
    assert reasons(hosts, request("y", cpu=4, labels={"gpu": "true"}, zones=["z1"])) == (
        "needs 4 cpu, the largest free host has 1.0"
    )
    assert reasons(hosts, r) is None


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="needs a group"):
        request("r", max_per_host=1)
    with pytest.raises(ValueError, match=">= 1"):
        request("r", group="g", max_per_host=0)
    with pytest.raises(ValueError, match="cpu"):
        request("r", cpu=-1)
    with pytest.raises(ValueError, match="cpu"):
        request("r", cpu=float("nan"))
    with pytest.raises(ValueError, match="memory_mb"):
        request("r", memory_mb=-1)


def test_duplicate_host_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        place([host("a"), host("a")], [request("r")], now=0.0)
    with pytest.raises(ValueError, match="duplicate"):
        Table([host("a"), host("a")])
