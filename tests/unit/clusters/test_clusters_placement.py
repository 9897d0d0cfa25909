"""Placement policies: honoured where the hosts allow, relaxed and reported where they cannot."""

from __future__ import annotations

from collections import Counter

from cellplane.clusters.placement import place_nodes
from cellplane.scheduler import HostSnapshot, PlacementRequest, Resources

SMALL = Resources(cpu=1, memory_mb=256, disk_gb=1)


def host(i: int, zone: str | None = None, cpu: float = 8, mem: int = 8192) -> HostSnapshot:
    return HostSnapshot(
        id=f"h{i}",
        state="READY",
        capacity=Resources(cpu=cpu, memory_mb=mem, disk_gb=100),
        used=Resources(cpu=0, memory_mb=0, disk_gb=0),
        zone=zone,
    )


def group(name: str, n: int, **policy: object) -> list[PlacementRequest]:
    return [
        PlacementRequest(id=f"c-{name}-{i}", resources=SMALL, group=f"c/{name}", **policy)  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_instance_per_host_is_honoured_when_there_are_hosts_enough() -> None:
    out = place_nodes([host(0), host(1), host(2)], group("zk", 3, max_per_host=1))
    assert not out.notes and not out.unplaced
    assert sorted(Counter(out.hosts.values()).values()) == [1, 1, 1]


def test_instance_per_host_on_one_host_is_relaxed_and_reported() -> None:
    out = place_nodes([host(0)], group("zk", 3, max_per_host=1))
    assert not out.unplaced
    assert set(out.hosts.values()) == {"h0"} and len(out.hosts) == 3
    (note,) = out.notes
    assert "node group zk" in note and "instancePerHost 1" in note and "1 ready host" in note


def test_with_two_hosts_the_limit_holds_as_far_as_it_can_only_after_reporting() -> None:
    out = place_nodes([host(0), host(1)], group("zk", 3, max_per_host=1))
    assert not out.unplaced and len(out.hosts) == 3
    assert len(out.notes) == 1


def test_only_the_group_that_cannot_hold_is_relaxed() -> None:
    requests = group("spread", 2, max_per_host=1) + group("packed", 3, max_per_host=1)
    out = place_nodes([host(0), host(1)], requests)
    assert not out.unplaced
    assert [n for n in out.notes if "spread" in n] == []
    assert any("packed" in n for n in out.notes)


def test_racks_map_to_zones_and_a_missing_zone_is_relaxed() -> None:
    hosts = [host(0, "rack1"), host(1, "rack2")]
    ok = place_nodes(hosts, group("w", 2, zones=frozenset({"rack2"})))
    assert set(ok.hosts.values()) == {"h1"} and not ok.notes
    missing = place_nodes(hosts, group("w", 2, zones=frozenset({"rack9"})))
    assert len(missing.hosts) == 2 and not missing.unplaced
    assert "groupRacks ['rack9']" in missing.notes[0]


def test_strict_association_becomes_weak_when_it_cannot_hold() -> None:
    # The master's host has room for one worker only; STRICT cannot hold for the second.
    hosts = [host(0, cpu=1), host(1, cpu=2)]
    requests = group("master", 1) + group("worker", 2, near="c/master", near_strict=True)
    out = place_nodes(hosts, requests)
    assert not out.unplaced and len(out.hosts) == 3
    master = out.hosts["c-master-0"]
    assert master in {out.hosts["c-worker-0"], out.hosts["c-worker-1"]}
    assert any("STRICT groupAssociation with master" in n for n in out.notes)
    # With room next to the master, STRICT holds and nothing is reported.
    roomy = place_nodes([host(0, cpu=1), host(1, cpu=8)], requests)
    assert not roomy.notes
    assert {roomy.hosts["c-worker-0"], roomy.hosts["c-worker-1"]} == {roomy.hosts["c-master-0"]}


def test_resources_are_never_relaxed() -> None:
    big = [
        PlacementRequest(
            id="c-big-0",
            resources=Resources(cpu=64, memory_mb=256, disk_gb=1),
            group="c/big",
            max_per_host=1,
        )
    ]
    out = place_nodes([host(0)], big)
    assert [u.request_id for u in out.unplaced] == ["c-big-0"]
    assert "cpu" in out.unplaced[0].reason
    assert out.hosts == {}


def test_no_policies_no_notes() -> None:
    out = place_nodes([host(0)], group("plain", 4))
    assert not out.notes and len(out.hosts) == 4


def test_without_relaxing_a_policy_that_cannot_hold_leaves_nodes_unplaced_naming_it() -> None:
    out = place_nodes([host(0), host(1)], group("zk", 3, max_per_host=1), relax=False)
    assert len(out.hosts) == 2 and set(out.hosts.values()) == {"h0", "h1"} and not out.notes
    (u,) = out.unplaced
    assert u.reason == "instancePerHost 1 for group c/zk: 2 hosts hold members"
    racks = place_nodes(
        [host(0, "rack1"), host(1, "rack2")],
        group("w", 1, zones=frozenset({"rack3"})),
        relax=False,
    )
    assert racks.unplaced[0].reason == "no host in zones {rack3}"
