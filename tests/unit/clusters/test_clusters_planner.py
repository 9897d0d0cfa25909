"""The pure planner: node names, sizes, placement requests, start order, resize diffs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from clusters_support import BDE_FIXTURES, FLAVORS, write_catalog

from cellplane.clusters import (
    Catalog,
    ClusterSpec,
    DependencyCycleError,
    PlanError,
    ResizeError,
    SpecError,
    apply_overrides,
    diff_for_resize,
    load_spec_file,
    missing_requirements,
    parse_spec,
    plan_cluster,
    render_role,
    start_order,
    topology_from_plan,
)
from cellplane.scheduler import Resources


def _fixture(name: str) -> ClusterSpec:
    return load_spec_file(BDE_FIXTURES / name)


def _groups(*groups: dict[str, Any]) -> ClusterSpec:
    return parse_spec({"nodeGroups": list(groups)})


def test_mesos_plan_names_roles_and_waves(catalog: Catalog) -> None:
    spec = _fixture("mesos_full_cluster.json")
    plan = plan_cluster(spec, catalog, cluster_name="m1", distro="mesos", flavors=FLAVORS)
    expected = [f"m1-{g.name}-{n}" for g in spec.node_groups for n in range(g.instance_num)]
    assert [node.name for node in plan.nodes] == expected
    assert plan.waves == (
        ("m1-zookeeper-0", "m1-zookeeper-1", "m1-zookeeper-2"),
        ("m1-master-0", "m1-master-1"),
        ("m1-slave-0", "m1-slave-1", "m1-slave-2"),
    )
    # On the master nodes mesos_master starts before the frameworks that wait for it.
    assert plan.node("m1-master-1").roles == ("mesos_master", "mesos_chronos", "mesos_marathon")
    assert plan.node("m1-slave-0").roles[-1] == "mesos_slave"
    flat_roles = [role for wave in plan.role_waves for role in wave]
    assert flat_roles.index("zookeeper") < flat_roles.index("mesos_master")
    assert flat_roles.index("mesos_master") < flat_roles.index("mesos_marathon")
    assert plan.undefined_roles == ()
    # Sizes come from cpuNum/memCapacityMB/storage.sizeGB, which override the flavor.
    assert plan.node("m1-master-0").resources == Resources(cpu=2, memory_mb=7500, disk_gb=1)
    assert plan.node("m1-zookeeper-2").placement.resources == Resources(1, 3748, 2)


def test_plan_is_deterministic(catalog: Catalog) -> None:
    spec = _fixture("kubernetes_cluster.json")
    first = plan_cluster(spec, catalog, cluster_name="k", distro="kubernetes", flavors=FLAVORS)
    again = plan_cluster(spec, catalog, cluster_name="k", distro="kubernetes", flavors=FLAVORS)
    assert first == again
    assert first.waves[0] == ("k-master-0",)
    assert set(first.waves[1]) == {"k-workstation-0"} | {f"k-minion-{i}" for i in range(4)}


def test_placement_requests_from_policies(catalog: Catalog) -> None:
    spec = _fixture("data_compute_separation_with_rack_policy_cluster.json")
    plan = plan_cluster(spec, catalog, cluster_name="h", distro=None, flavors=FLAVORS)
    requests = {r.id: r for r in plan.placement_requests}
    assert len(requests) == sum(g.instance_num for g in spec.node_groups)
    data = requests["h-d1-2"]
    assert (data.group, data.max_per_host, data.zones, data.near) == ("h/d1", 1, None, None)
    compute = requests["h-c1-0"]
    assert (compute.group, compute.near, compute.near_strict) == ("h/c1", "h/d1", True)
    assert compute.max_per_host is None
    # SMALL flavor, with storage.sizeGB overriding the disk.
    assert data.resources == Resources(1, 1024, 50)
    assert requests["h-master-0"].resources == FLAVORS["SMALL"]
    assert all(not r.labels and not r.ports for r in requests.values())
    # Hadoop roles have no definitions: the plan says so instead of failing.
    assert "hadoop_namenode" in plan.undefined_roles


def test_rack_policies_and_weak_association(catalog: Catalog) -> None:
    spec = _groups(
        {
            "name": "a",
            "roles": ["basic"],
            "instanceNum": 5,
            "placementPolicies": {
                "groupRacks": {"type": "ROUNDROBIN", "racks": ["r1", "r2", "r3"]}
            },
        },
        {
            "name": "b",
            "roles": ["basic"],
            "instanceNum": 2,
            "placementPolicies": {
                "groupRacks": {"type": "SAMERACK", "racks": ["r2", "r3"]},
                "groupAssociations": [{"reference": "a", "type": "WEAK"}],
            },
        },
    )
    plan = plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    zones = [n.placement.zones for n in plan.group_nodes("a")]
    assert zones == [frozenset({r}) for r in ("r1", "r2", "r3", "r1", "r2")]
    b = plan.group_nodes("b")
    assert {n.placement.zones for n in b} == {frozenset({"r2"})}
    assert {(n.placement.near, n.placement.near_strict) for n in b} == {("c/a", False)}


def test_resources_default_flavor_and_errors(catalog: Catalog) -> None:
    spec = _groups(
        {"name": "plain", "roles": ["basic"], "instanceNum": 1},
        {"name": "big", "roles": ["basic"], "instanceNum": 1, "instanceType": "LARGE", "cpuNum": 6},
    )
    plan = plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    assert plan.node("c-plain-0").resources == FLAVORS["MEDIUM"]
    large = FLAVORS["LARGE"]
    assert plan.node("c-big-0").resources == Resources(6, large.memory_mb, large.disk_gb)
    bad = _groups({"name": "g", "roles": ["basic"], "instanceNum": 1, "instanceType": "HUGE"})
    with pytest.raises(PlanError, match=r"nodeGroups\[0\]\.instanceType: unknown flavor 'HUGE'"):
        plan_cluster(bad, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    explicit = _groups(
        {
            "name": "g",
            "roles": ["basic"],
            "instanceNum": 1,
            "cpuNum": 3,
            "memCapacityMB": 512,
            "storage": {"sizeGB": 7},
        }
    )
    no_flavors = plan_cluster(explicit, catalog, cluster_name="c", distro=None, flavors={})
    assert no_flavors.nodes[0].resources == Resources(3, 512, 7)
    with pytest.raises(PlanError, match="needs instanceType"):
        plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors={})


def test_plan_refusals(catalog: Catalog) -> None:
    spec = _fixture("mesos_cluster.json")
    with pytest.raises(PlanError, match="DNS label"):
        plan_cluster(spec, catalog, cluster_name="bad_name", distro=None, flavors=FLAVORS)
    with pytest.raises(PlanError, match="unknown distro 'nope'"):
        plan_cluster(spec, catalog, cluster_name="c", distro="nope", flavors=FLAVORS)
    with pytest.raises(PlanError, match="distro etcd has no role zookeeper"):
        plan_cluster(spec, catalog, cluster_name="c", distro="etcd", flavors=FLAVORS)
    no_zk = apply_overrides(spec, {"zookeeper": {"instanceNum": 0}})
    with pytest.raises(PlanError, match="mesos_master waits for zookeeper"):
        plan_cluster(no_zk, catalog, cluster_name="c", distro="mesos", flavors=FLAVORS)


def test_start_order_layers_and_names_cycles() -> None:
    deps = {"a": set(), "b": {"a"}, "c": {"a", "b"}, "d": set()}
    assert start_order(deps) == [["a", "d"], ["b"], ["c"]]
    with pytest.raises(DependencyCycleError) as info:
        start_order({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": set()})
    assert info.value.cycle == ("x", "y", "z", "x")
    assert "role dependency cycle: x -> y -> z -> x" in str(info.value)
    with pytest.raises(DependencyCycleError, match="s -> s"):
        start_order({"s": {"s"}})


def _role(name: str, waits_for: list[str], provides: list[str] | None = None) -> str:
    return (
        f"name: {name}\ncommand: [/bin/true]\nwaits_for: {waits_for}\nprovides: {provides or []}\n"
    )


def test_role_cycle_from_catalog_is_refused(tmp_path: Path) -> None:
    root = write_catalog(
        tmp_path,
        {
            "roles/alpha.yaml": _role("alpha", ["beta"]),
            "roles/beta.yaml": _role("beta", ["svc"]),
            "roles/gamma.yaml": _role("gamma", [], provides=["other"]),
            "roles/delta.yaml": _role("delta", ["alpha"], provides=["svc"]),
        },
    )
    catalog = Catalog.load([root])
    spec = _groups(
        {"name": "one", "roles": ["alpha", "gamma"], "instanceNum": 1},
        {"name": "two", "roles": ["beta", "delta"], "instanceNum": 1},
    )
    with pytest.raises(DependencyCycleError) as info:
        plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    assert info.value.cycle == ("alpha", "beta", "delta", "alpha")


def test_node_group_cycle_is_refused(tmp_path: Path) -> None:
    # No role cycle, but group one waits for two (alpha -> beta) and two for one (beta -> gamma).
    root = write_catalog(
        tmp_path,
        {
            "roles/alpha.yaml": _role("alpha", ["beta"]),
            "roles/beta.yaml": _role("beta", ["gamma"]),
            "roles/gamma.yaml": _role("gamma", []),
        },
    )
    catalog = Catalog.load([root])
    spec = _groups(
        {"name": "one", "roles": ["alpha", "gamma"], "instanceNum": 1},
        {"name": "two", "roles": ["beta"], "instanceNum": 1},
    )
    with pytest.raises(DependencyCycleError) as info:
        plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    assert info.value.kind == "node group"
    assert info.value.cycle == ("one", "two", "one")


def test_overrides_feed_the_plan(catalog: Catalog) -> None:
    spec = apply_overrides(
        _fixture("mesos_cluster.json"),
        {"slave": {"instanceNum": 5, "instanceType": "LARGE", "cpuNum": 8, "memCapacityMB": 2048}},
    )
    plan = plan_cluster(spec, catalog, cluster_name="c", distro="mesos", flavors=FLAVORS)
    slaves = plan.group_nodes("slave")
    assert [n.name for n in slaves] == [f"c-slave-{i}" for i in range(5)]
    assert {n.resources for n in slaves} == {Resources(8, 2048, 1)}


def test_resize_grow_and_shrink(catalog: Catalog) -> None:
    spec = catalog.find_spec("redis")
    grow = diff_for_resize(spec, catalog, cluster_name="r", group="replica", instance_num=4)
    assert (grow.add, grow.remove) == (("r-replica-2", "r-replica-3"), ())
    assert grow.spec.group("replica").instance_num == 4
    shrink = diff_for_resize(grow.spec, catalog, cluster_name="r", group="replica", instance_num=1)
    assert (shrink.add, shrink.remove) == ((), ("r-replica-3", "r-replica-2", "r-replica-1"))
    same = diff_for_resize(spec, catalog, cluster_name="r", group="replica", instance_num=2)
    assert (same.add, same.remove) == ((), ())


def test_resize_fills_gaps_and_refuses_what_it_must(catalog: Catalog) -> None:
    spec = catalog.find_spec("redis")
    gaps = diff_for_resize(
        spec,
        catalog,
        cluster_name="r",
        group="replica",
        instance_num=3,
        existing=["r-replica-0", "r-replica-4"],
    )
    assert gaps.add == ("r-replica-1",)
    drop = diff_for_resize(
        spec,
        catalog,
        cluster_name="r",
        group="replica",
        instance_num=1,
        existing=["r-replica-0", "r-replica-4"],
    )
    assert drop.remove == ("r-replica-4",)
    with pytest.raises(ResizeError, match="role zookeeper cannot be scaled in"):
        diff_for_resize(
            catalog.find_spec("zookeeper"), catalog, cluster_name="z", group="zk", instance_num=1
        )
    with pytest.raises(ResizeError, match="no node group named 'nope'"):
        diff_for_resize(spec, catalog, cluster_name="r", group="nope", instance_num=1)
    with pytest.raises(ResizeError, match="not named r-replica-<n>"):
        diff_for_resize(
            spec, catalog, cluster_name="r", group="replica", instance_num=1, existing=["x"]
        )
    with pytest.raises(ResizeError, match=">= 0"):
        diff_for_resize(spec, catalog, cluster_name="r", group="replica", instance_num=-1)


def test_missing_requirements_name_what_is_missing(catalog: Catalog) -> None:
    hadoop = plan_cluster(
        _fixture("default_hadoop_cluster.json"),
        catalog,
        cluster_name="h",
        distro=None,
        flavors=FLAVORS,
    )
    problems = missing_requirements(hadoop, catalog, lambda _: True)
    # Hadoop roles are named and explained, not just "undefined".
    assert any(
        p.startswith("role hadoop_namenode is not deployable: Apache Hadoop") for p in problems
    )
    assert len(problems) == len(hadoop.undefined_roles)
    mesos = plan_cluster(
        _fixture("mesos_cluster.json"), catalog, cluster_name="m", distro="mesos", flavors=FLAVORS
    )
    present = set(catalog.roles["zookeeper"].requires.binaries)
    problems = missing_requirements(mesos, catalog, present.__contains__)
    where = (
        "not packaged in Debian (the distro ships it as https://0.0.0.0/yum/mesos.repo, "
        "which Cellplane does not fetch)"
    )
    assert problems == [
        f"role mesos_master needs /usr/sbin/mesos-master, which the image does not have: {where}",
        f"role mesos_slave needs /usr/sbin/mesos-slave, which the image does not have: {where}",
    ]


def test_topology_from_plan_renders_every_node(catalog: Catalog) -> None:
    plan = plan_cluster(
        catalog.find_spec("zookeeper"),
        catalog,
        cluster_name="zk3",
        distro="zookeeper",
        flavors=FLAVORS,
    )
    addresses = {n.name: f"10.1.0.{i}" for i, n in enumerate(plan.nodes)}
    topo = topology_from_plan(plan, catalog, addresses=addresses)
    members = topo.members["zookeeper"]
    assert [(m.name, m.id, m.address) for m in members] == [
        (n.name, i + 1, addresses[n.name]) for i, n in enumerate(plan.nodes)
    ]
    for node in plan.nodes:
        rendered = render_role(catalog.roles["zookeeper"], topo, node.name)
        zoo = rendered.files["/etc/cellplane/zookeeper/zoo.cfg"]
        assert [line for line in zoo.splitlines() if line.startswith("server.")] == [
            f"server.{m.id}={m.address}:2888:3888" for m in members
        ]
    by_name = topology_from_plan(plan, catalog)
    assert {m.address for m in by_name.members["zookeeper"]} == {n.name for n in plan.nodes}


def test_topology_merges_configuration(catalog: Catalog) -> None:
    spec = parse_spec(
        {
            "configuration": {"zookeeper": {"zoo.cfg": {"tickTime": 3000, "initLimit": 20}}},
            "nodeGroups": [
                {
                    "name": "g",
                    "roles": ["zookeeper"],
                    "instanceNum": 1,
                    "configuration": {"zookeeper": {"zoo.cfg": {"initLimit": 30}}},
                },
                {"name": "h", "roles": ["zookeeper"], "instanceNum": 1},
            ],
        }
    )
    plan = plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    topo = topology_from_plan(plan, catalog)
    assert topo.configuration["c-g-0"] == {
        "zookeeper": {"zoo.cfg": {"tickTime": 3000, "initLimit": 30}}
    }
    assert topo.configuration["c-h-0"] == {
        "zookeeper": {"zoo.cfg": {"tickTime": 3000, "initLimit": 20}}
    }
    zoo = render_role(catalog.roles["zookeeper"], topo, "c-g-0").files[
        "/etc/cellplane/zookeeper/zoo.cfg"
    ]
    assert "tickTime=3000\n" in zoo and "initLimit=30\n" in zoo and "syncLimit=5\n" in zoo


def test_a_node_groups_isolation_class_goes_into_its_placement(catalog: Catalog) -> None:
    spec = _groups(
        {"name": "zk", "roles": ["zookeeper"], "instanceNum": 2, "isolation": "sandbox"},
        {"name": "plain", "roles": ["zookeeper"], "instanceNum": 1},
    )
    plan = plan_cluster(spec, catalog, cluster_name="c", distro=None, flavors=FLAVORS)
    assert [n.placement.isolation for n in plan.nodes] == ["sandbox", "sandbox", "standard"]
    with pytest.raises(SpecError, match=r"nodeGroups\[0\]\.isolation: input should be"):
        _groups({"name": "zk", "roles": ["zookeeper"], "instanceNum": 1, "isolation": "vm"})
