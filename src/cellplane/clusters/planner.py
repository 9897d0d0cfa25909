"""The pure cluster planner: spec + catalog -> nodes, placement requests, start order.

The cluster deploy executor calls :func:`plan_cluster` once per create, hands
``plan.placement_requests`` to the scheduler, starts nodes wave by wave
(``plan.waves``), and renders roles against :func:`topology_from_plan`.
Resizes go through :func:`diff_for_resize`. Nothing here reads the clock,
the disk or the network: every input is an argument, so the same inputs give
the same plan.

Start order: a role waits for every role named in its ``waits_for`` (a name
matches a role of that name or one that ``provides`` it). Roles are layered
into ``role_waves``; node groups are layered into ``waves`` so that a group
starts after every other group hosting a role it waits for. Within a node,
roles start in role-wave order (``NodePlan.roles``), which covers dependencies
between roles of the same group (mesos_marathon on the mesos_master nodes).
Cycles are refused and named, between roles or else between node groups.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from cellplane.clusters.catalog import Catalog
from cellplane.clusters.errors import DependencyCycleError, FieldIssue, PlanError, ResizeError
from cellplane.clusters.roles import Member, RoleDefinition, Topology, missing_binaries
from cellplane.clusters.spec import (
    MAX_CLUSTER_NODES,
    ClusterSpec,
    NodeGroupSpec,
    apply_overrides,
    cell_name,
)
from cellplane.scheduler import PlacementRequest, Resources

__all__ = [
    "DATA_VOLUME_SUFFIX",
    "DEFAULT_INSTANCE_TYPE",
    "UNDEPLOYABLE_FAMILIES",
    "ClusterPlan",
    "NodePlan",
    "NodeVolume",
    "ResizeDiff",
    "configuration_issues",
    "data_volume_name",
    "diff_for_resize",
    "group_resources",
    "merged_configuration",
    "missing_requirements",
    "node_name",
    "node_volume",
    "plan_cluster",
    "role_dependencies",
    "start_order",
    "topology_from_plan",
    "undeployable_reason",
]

# Serengeti sizes a node group without instanceType (and without full cpu/mem/disk) as MEDIUM.
DEFAULT_INSTANCE_TYPE = "MEDIUM"
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
DATA_VOLUME_SUFFIX = "-data"


@dataclass(frozen=True)
class NodePlan:
    """One node (one cell) of the cluster."""

    name: str
    group: str
    index: int
    roles: tuple[str, ...]
    resources: Resources
    storage_type: str | None
    ha: str | None
    wave: int
    placement: PlacementRequest


@dataclass(frozen=True)
class ClusterPlan:
    """The whole deployment plan; `waves` lists node names, earliest first."""

    cluster_name: str
    distro: str | None
    spec: ClusterSpec
    nodes: tuple[NodePlan, ...]
    role_waves: tuple[tuple[str, ...], ...]
    waves: tuple[tuple[str, ...], ...]
    undefined_roles: tuple[str, ...]

    @property
    def placement_requests(self) -> tuple[PlacementRequest, ...]:
        return tuple(node.placement for node in self.nodes)

    @cached_property
    def _by_name(self) -> dict[str, NodePlan]:
        return {node.name: node for node in self.nodes}

    def node(self, name: str) -> NodePlan:
        """The node called `name` (a dict lookup: plans of thousands of nodes stay linear)."""
        return self._by_name[name]

    def group_nodes(self, group: str) -> tuple[NodePlan, ...]:
        return tuple(node for node in self.nodes if node.group == group)


@dataclass(frozen=True)
class ResizeDiff:
    """Nodes to create and to remove to bring `group` to its new size."""

    group: str
    add: tuple[str, ...]
    remove: tuple[str, ...]
    spec: ClusterSpec


_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def node_name(cluster_name: str, group: str, index: int) -> str:
    """The stable node (and host) name ``<cluster>-<cell name of group>-<n>``, n from 0.

    The group's cell name is :func:`~cellplane.clusters.spec.cell_name`: the group name
    itself when lowercase, ``dataMaster`` -> ``data-master`` otherwise.
    """
    return f"{cluster_name}-{cell_name(group)}-{index}"


@dataclass(frozen=True)
class NodeVolume:
    """A node's data volume: its name, size and where the node's cell mounts it."""

    name: str
    size_gb: int
    path: str


def data_volume_name(node: str) -> str:
    """The node's data volume: ``<node>-data``, a DNS label like the node name.

    A node name longer than 58 characters is cut to 49 and followed by ``-`` and the first 8
    hex digits of its SHA-256, so the name stays within 63 characters, unique and stable.
    """
    name = node + DATA_VOLUME_SUFFIX
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(node.encode()).hexdigest()[:8]
    return f"{node[: 63 - len(DATA_VOLUME_SUFFIX) - 9]}-{digest}{DATA_VOLUME_SUFFIX}"


def node_volume(node: NodePlan, catalog: Catalog) -> NodeVolume | None:
    """The node's data volume, or None when it has no disk size or no role with a ``data_dir``.

    One volume per node, mounted at the ``data_dir`` of the node's first role (in start order)
    that has one; the data of a later role with another ``data_dir`` is not on the volume
    unless that directory lies under the first one.
    """
    if node.resources.disk_gb <= 0:
        return None
    for role in node.roles:
        definition = catalog.roles.get(role)
        if definition is not None and definition.data_dir is not None:
            return NodeVolume(
                data_volume_name(node.name), node.resources.disk_gb, definition.data_dir
            )
    return None


def role_dependencies(roles: Iterable[str], catalog: Catalog) -> dict[str, frozenset[str]]:
    """For each of `roles`, the roles among them it waits for.

    Raises PlanError when a role waits for something no role in `roles` provides.
    """
    present = list(dict.fromkeys(roles))
    provided: dict[str, set[str]] = {}
    for role in present:
        provided.setdefault(role, set()).add(role)
        definition = catalog.roles.get(role)
        for service in definition.provides if definition else ():
            provided.setdefault(service, set()).add(role)
    deps: dict[str, frozenset[str]] = {}
    for role in present:
        definition = catalog.roles.get(role)
        wanted: set[str] = set()
        for service in definition.waits_for if definition else ():
            providers = provided.get(service, set()) - {role}
            if not providers:
                raise PlanError(
                    f"role {role} waits for {service}, which no node group of this cluster provides"
                )
            wanted |= providers
        deps[role] = frozenset(wanted)
    return deps


def _find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    stack: list[str] = []

    def visit(role: str) -> list[str] | None:
        colour[role] = grey
        stack.append(role)
        for dep in sorted(deps.get(role, ())):
            if colour.get(dep, black) == grey:
                return [*stack[stack.index(dep) :], dep]
            if colour.get(dep) == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[role] = black
        return None

    for role in sorted(deps):
        if colour[role] == white:
            found = visit(role)
            if found:
                return found
    return None


def start_order(deps: Mapping[str, Iterable[str]], *, kind: str = "role") -> list[list[str]]:
    """Layer names (roles or node groups) into waves, each after all it depends on.

    Names within a wave are sorted. Raises DependencyCycleError naming the
    cycle (e.g. ``a -> b -> a``); `kind` says what the names are in that message.
    """
    cycle = _find_cycle(deps)
    if cycle is not None:
        raise DependencyCycleError(cycle, kind)
    level: dict[str, int] = {}

    def depth(role: str) -> int:
        if role not in level:
            level[role] = 1 + max((depth(d) for d in deps.get(role, ()) if d in deps), default=-1)
        return level[role]

    for role in deps:
        depth(role)
    waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for role in sorted(level):
        waves[level[role]].append(role)
    return waves


def _resources(group: NodeGroupSpec, i: int, flavors: Mapping[str, Resources]) -> Resources:
    path = f"nodeGroups[{i}]"
    explicit = (
        group.cpu_num is not None
        and group.mem_capacity_mb is not None
        and group.storage is not None
        and group.storage.size_gb is not None
    )
    base: Resources | None = None
    if group.instance_type is not None:
        if group.instance_type not in flavors:
            known = ", ".join(sorted(flavors)) or "none"
            raise PlanError(
                f"{path}.instanceType: unknown flavor {group.instance_type!r} (known: {known})"
            )
        base = flavors[group.instance_type]
    elif not explicit:
        if DEFAULT_INSTANCE_TYPE not in flavors:
            raise PlanError(
                f"{path}: needs instanceType, or cpuNum, memCapacityMB and storage.sizeGB"
            )
        base = flavors[DEFAULT_INSTANCE_TYPE]
    cpu = group.cpu_num if group.cpu_num is not None else (base.cpu if base else 0.0)
    mem = (
        group.mem_capacity_mb
        if group.mem_capacity_mb is not None
        else (base.memory_mb if base else 0)
    )
    size = group.storage.size_gb if group.storage is not None else None
    disk = size if size is not None else (base.disk_gb if base else 0)
    return Resources(cpu=float(cpu), memory_mb=mem, disk_gb=disk)


def _placement(
    cluster_name: str, group: NodeGroupSpec, i: int, index: int, resources: Resources
) -> PlacementRequest:
    policies = group.placement_policies
    near: str | None = None
    strict = False
    zones: frozenset[str] | None = None
    if policies is not None:
        associations = policies.group_associations or ()
        if len(associations) > 1:
            raise PlanError(
                f"nodeGroups[{i}].placementPolicies.groupAssociations: at most one association"
            )
        if associations:
            near = f"{cluster_name}/{associations[0].reference}"
            strict = associations[0].type == "STRICT"
        racks = policies.group_racks.racks if policies.group_racks else None
        if racks:
            assert policies.group_racks is not None
            # ROUNDROBIN pins node n to rack n mod len(racks); SAMERACK keeps all in the first.
            if policies.group_racks.type == "ROUNDROBIN":
                zones = frozenset({racks[index % len(racks)]})
            else:
                zones = frozenset({racks[0]})
    return PlacementRequest(
        id=node_name(cluster_name, group.name, index),
        resources=resources,
        group=f"{cluster_name}/{group.name}",
        max_per_host=policies.instance_per_host if policies else None,
        zones=zones,
        near=near,
        near_strict=strict,
    )


def _group_waves(live: list[NodeGroupSpec], deps: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """Layer node groups: a group starts after every *other* group hosting a role it waits for.

    Kahn's algorithm over roles rather than group pairs, so thousands of groups stay linear:
    a group is ready once, for each role it waits for, every other group hosting that role
    is placed. Raises DependencyCycleError naming a cycle between groups.
    """
    hosts: dict[str, set[str]] = {}
    for g in live:
        for role in g.roles:
            hosts.setdefault(role, set()).add(g.name)
    awaited: dict[str, set[str]] = {
        g.name: {d for r in g.roles for d in deps[r] if hosts.get(d, set()) - {g.name}}
        for g in live
    }
    waiters: dict[str, list[str]] = {}
    for name, roles in awaited.items():
        for role in roles:
            waiters.setdefault(role, []).append(name)
    pending_hosts = {role: set(names) for role, names in hosts.items()}
    roles_of = {g.name: g.roles for g in live}
    unmet = {name: len(roles) for name, roles in awaited.items()}
    satisfied: set[tuple[str, str]] = set()

    def satisfy(group: str, role: str, ready: list[str]) -> None:
        if (group, role) in satisfied:
            return
        satisfied.add((group, role))
        unmet[group] -= 1
        if unmet[group] == 0:
            ready.append(group)

    waves: list[list[str]] = []
    current = sorted(name for name, n in unmet.items() if n == 0)
    placed = 0
    while current:
        waves.append(current)
        placed += len(current)
        nxt: list[str] = []
        for group in current:
            for role in roles_of[group]:
                left = pending_hosts.get(role)
                if left is None or group not in left:
                    continue
                left.discard(group)
                for waiter in waiters.get(role, ()) if len(left) <= 1 else ():
                    # Satisfied when nothing is left, or only the waiter itself (a role inside
                    # its own node starts in role-wave order, not after its own group).
                    if not left or left == {waiter}:
                        satisfy(waiter, role, nxt)
        current = sorted(set(nxt))
    if placed < len(live):
        rest = {g.name for g in live} - {n for w in waves for n in w}
        edges = {
            name: {h for role in awaited[name] for h in hosts[role] if h != name and h in rest}
            for name in rest
        }
        cycle = _find_cycle(edges)
        raise DependencyCycleError(cycle or sorted(rest), "node group")
    return waves


def group_resources(
    spec: ClusterSpec, flavors: Mapping[str, Resources]
) -> list[tuple[NodeGroupSpec, Resources]]:
    """Each group with the size of one of its nodes, without building any node.

    The clusters service checks quota on this (count x size per group) before planning.
    Raises PlanError for an unknown flavor or a group without any size.
    """
    return [(group, _resources(group, i, flavors)) for i, group in enumerate(spec.node_groups)]


# Serengeti's Hadoop-family roles, which no catalog folder of Cellplane defines, and why.
UNDEPLOYABLE_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("hadoop_", "hbase_", "hive", "pig", "tempfs_", "zookeeper_server", "hue"),
        "Apache Hadoop 1.x/2.x, HBase, Hive and Pig (Serengeti's Chef roles) are not packaged "
        "in Debian 12, and Serengeti installed them from vendor tarballs or yum repositories "
        "that Cellplane does not fetch",
    ),
    (
        ("mapr_",),
        "MapR is proprietary software installed from MapR's own repositories with a licence; "
        "nothing of it is on these machines",
    ),
    (
        (
            "NAMENODE",
            "SECONDARY_NAMENODE",
            "DATANODE",
            "HDFS_",
            "YARN_",
            "MAPREDUCE",
            "RESOURCEMANAGER",
            "NODEMANAGER",
            "HBASE_",
            "HIVE_",
            "ZOOKEEPER_SERVER",
        ),
        "Ambari and Cloudera Manager roles are deployed by those application managers "
        "(appManager Ambari / ClouderaManager), external servers that install HDP/CDH "
        "packages; Cellplane only has the Default application manager",
    ),
)


def undeployable_reason(role: str) -> str | None:
    """Why a Serengeti role Cellplane has no definition for cannot be deployed, if known."""
    for prefixes, reason in UNDEPLOYABLE_FAMILIES:
        if any(role.startswith(p) for p in prefixes):
            return reason
    return None


def _is_empty(value: Any) -> bool:
    """A configuration value with nothing in it (Serengeti's samples carry empty sections)."""
    if isinstance(value, Mapping):
        return all(_is_empty(v) for v in value.values())
    return False


def _section_issues(
    path: str,
    configuration: Mapping[str, Any],
    roles: Iterable[str],
    catalog: Catalog,
) -> list[FieldIssue]:
    present = list(dict.fromkeys(roles))
    readers: dict[str, list[RoleDefinition]] = {}
    for role in present:
        definition = catalog.roles.get(role)
        if definition is not None and definition.configuration is not None:
            readers.setdefault(definition.configuration.section, []).append(definition)
    undefined = [r for r in present if r not in catalog.roles]
    issues: list[FieldIssue] = []
    for section, body in configuration.items():
        where = f"{path}.{section}"
        owners = readers.get(section)
        if not owners:
            if _is_empty(body) or undefined:
                continue  # nothing to apply, or the deploy is refused for its roles anyway
            known = sorted(readers) or ["none"]
            issues.append(
                FieldIssue(
                    where,
                    "no role of this cluster reads this section (sections its roles read: "
                    f"{', '.join(known)})",
                )
            )
            continue
        names = ", ".join(d.name for d in owners)
        if not isinstance(body, Mapping):
            issues.append(FieldIssue(where, "must be an object of files"))
            continue
        files: dict[str, dict[str, Any]] = {}
        for definition in owners:
            assert definition.configuration is not None
            for file, keys in definition.configuration.files.items():
                files.setdefault(file, {}).update(keys)
        for file, values in body.items():
            if file not in files:
                issues.append(
                    FieldIssue(
                        f"{where}.{file}",
                        f"not a file Cellplane's {names} role renders from configuration "
                        f"(known: {', '.join(sorted(files))})",
                    )
                )
                continue
            if not isinstance(values, Mapping):
                issues.append(FieldIssue(f"{where}.{file}", "must be an object of settings"))
                continue
            keys = files[file]
            for key, value in values.items():
                schema = keys.get(key, keys.get("*"))
                if schema is None:
                    issues.append(
                        FieldIssue(
                            f"{where}.{file}.{key}",
                            f"not a setting Cellplane's {names} role understands "
                            f"(known: {', '.join(sorted(keys))})",
                        )
                    )
                    continue
                problem = schema.check(value)
                if problem is not None:
                    issues.append(FieldIssue(f"{where}.{file}.{key}", problem))
    return issues


def configuration_issues(spec: ClusterSpec, catalog: Catalog) -> list[FieldIssue]:
    """Every ``configuration`` value no role of the cluster can use, named by its key.

    A section read by a role (``zookeeper``, ``etcd``...) is checked key by key against the
    role's declared settings; a non-empty section no role of the cluster reads is refused.
    Sections of roles Cellplane cannot deploy (Hadoop...) are left alone: the deploy is
    refused for those roles, naming them.
    """
    all_roles = [r for g in spec.node_groups for r in g.roles]
    issues = _section_issues("configuration", spec.configuration or {}, all_roles, catalog)
    for i, group in enumerate(spec.node_groups):
        if group.configuration:
            issues.extend(
                _section_issues(
                    f"nodeGroups[{i}].configuration", group.configuration, group.roles, catalog
                )
            )
    return issues


def plan_cluster(
    spec: ClusterSpec,
    catalog: Catalog,
    *,
    cluster_name: str,
    distro: str | None,
    flavors: Mapping[str, Resources],
) -> ClusterPlan:
    """Plan every node of `spec`: names, sizes, roles, placement and start order.

    `flavors` maps instanceType names (SMALL, MEDIUM, ...) to sizes; cpuNum,
    memCapacityMB and storage.sizeGB override them. With a `distro`, every role
    must be one the distro ships. Roles without a definition in the catalog
    are planned (listed in ``undefined_roles``) so a deploy can refuse them
    with a clear message. Bounded and linear: a cluster over
    :data:`~cellplane.clusters.spec.MAX_CLUSTER_NODES` nodes is refused before any node
    is built, and no step compares every group (or node) with every other.
    """
    if not _LABEL_RE.fullmatch(cluster_name):
        raise PlanError(f"cluster name {cluster_name!r} must be a DNS label (letters, digits, '-')")
    total = spec.total_nodes
    if total > MAX_CLUSTER_NODES:
        raise PlanError(
            f"the spec asks for {total} nodes; a cluster has at most {MAX_CLUSTER_NODES}"
        )
    if distro is not None:
        if distro not in catalog.distros:
            raise PlanError(f"unknown distro {distro!r}")
        shipped = catalog.distros[distro].roles
        for i, group in enumerate(spec.node_groups):
            for role in group.roles:
                if role not in shipped:
                    raise PlanError(f"nodeGroups[{i}].roles: distro {distro} has no role {role}")
    config_problems = configuration_issues(spec, catalog)
    if config_problems:
        raise PlanError("; ".join(str(i) for i in config_problems))
    all_roles = [role for group in spec.node_groups for role in group.roles]
    # Only groups that get nodes can satisfy a dependency.
    live = [g for g in spec.node_groups if g.instance_num > 0]
    deps = role_dependencies([role for g in live for role in g.roles], catalog)
    role_waves = start_order(deps)
    wave_of = {role: w for w, roles in enumerate(role_waves) for role in roles}
    # A group waits for every other group hosting a role one of its roles waits for;
    # dependencies inside a node are met by starting its roles in role-wave order.
    group_waves = _group_waves(live, deps)
    group_wave = {g: w for w, groups in enumerate(group_waves) for g in groups}
    sized = group_resources(spec, flavors)
    nodes: list[NodePlan] = []
    for i, (group, resources) in enumerate(sized):
        if group.instance_num == 0:
            continue
        order = {r: k for k, r in enumerate(group.roles)}
        roles = tuple(sorted(group.roles, key=lambda r: (wave_of[r], order[r])))
        wave = group_wave[group.name]
        last = node_name(cluster_name, group.name, group.instance_num - 1)
        if len(last) > 63:
            raise PlanError(f"node name {last!r} is longer than 63 characters")
        if not _NODE_NAME.fullmatch(last):
            raise PlanError(
                f"nodeGroups[{i}].name {group.name!r}: node names such as {last!r} name cells "
                "and hosts, so they must be lowercase letters, digits and '-'"
            )
        for index in range(group.instance_num):
            name = node_name(cluster_name, group.name, index)
            nodes.append(
                NodePlan(
                    name=name,
                    group=group.name,
                    index=index,
                    roles=roles,
                    resources=resources,
                    storage_type=group.storage.type if group.storage else None,
                    ha=group.ha_flag,
                    wave=wave,
                    placement=_placement(cluster_name, group, i, index, resources),
                )
            )
    node_waves: list[list[str]] = [[] for _ in group_waves]
    for node in nodes:
        node_waves[node.wave].append(node.name)
    undefined = tuple(sorted({r for r in all_roles if r not in catalog.roles}))
    return ClusterPlan(
        cluster_name=cluster_name,
        distro=distro,
        spec=spec,
        nodes=tuple(nodes),
        role_waves=tuple(tuple(w) for w in role_waves),
        waves=tuple(tuple(w) for w in node_waves),
        undefined_roles=undefined,
    )


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merged_configuration(spec: ClusterSpec, group: str) -> dict[str, Any]:
    """Cluster-level ``configuration`` with the node group's merged over it."""
    return _deep_merge(spec.configuration or {}, spec.group(group).configuration or {})


def topology_from_plan(
    plan: ClusterPlan,
    catalog: Catalog,
    *,
    addresses: Mapping[str, str] | None = None,
    state: Literal["new", "existing"] = "new",
) -> Topology:
    """The topology templates render from; a node's address defaults to its name (DNS)."""
    addresses = addresses or {}
    members: dict[str, list[Member]] = {}
    for node in plan.nodes:
        for role in node.roles:
            ids = members.setdefault(role, [])
            address = addresses.get(node.name, node.name)
            ids.append(Member(node.name, address, len(ids) + 1, node.index, node.group))
    ports = {
        role: dict(catalog.roles[role].ports) if role in catalog.roles else {} for role in members
    }
    per_group = {
        g.name: _deep_merge(plan.spec.configuration or {}, g.configuration or {})
        for g in plan.spec.node_groups
    }
    configuration = {node.name: per_group[node.group] for node in plan.nodes}
    return Topology(
        cluster_name=plan.cluster_name,
        members={role: tuple(ms) for role, ms in members.items()},
        ports=ports,
        state=state,
        configuration=configuration,
    )


def missing_requirements(
    plan: ClusterPlan, catalog: Catalog, available: Callable[[str], bool]
) -> list[str]:
    """Human-readable reasons the plan cannot run on an image; empty when it can."""
    problems = []
    for role in plan.undefined_roles:
        reason = undeployable_reason(role)
        problems.append(
            f"role {role} is not deployable: {reason}"
            if reason
            else f"role {role} has no definition in the catalog"
        )
    seen: set[str] = set()
    for node in plan.nodes:
        for role in node.roles:
            if role in seen or role not in catalog.roles:
                continue
            seen.add(role)
            for binary in missing_binaries(catalog.roles[role], available):
                problems.append(f"role {role} needs {binary}, which the image does not have")
    return problems


def _index_of(cluster_name: str, group: str, name: str) -> int:
    prefix = f"{cluster_name}-{cell_name(group)}-"
    suffix = name[len(prefix) :]
    if not name.startswith(prefix) or not suffix.isdigit():
        raise ResizeError(f"node {name!r} is not named {prefix}<n>")
    return int(suffix)


def diff_for_resize(
    spec: ClusterSpec,
    catalog: Catalog,
    *,
    cluster_name: str,
    group: str,
    instance_num: int,
    existing: Iterable[str] | None = None,
) -> ResizeDiff:
    """Which nodes to add or remove so `group` has `instance_num` nodes.

    `existing` are the group's node names now (default: what `spec` says).
    New nodes take the lowest free indexes; the highest indexes are removed
    first. Shrinking a group with a role whose ``scale_in`` is false is refused.
    """
    try:
        group_spec = spec.group(group)
    except KeyError:
        raise ResizeError(f"no node group named {group!r}") from None
    if instance_num < 0:
        raise ResizeError(f"{group}: instance count must be >= 0, not {instance_num}")
    if existing is None:
        indexes = set(range(group_spec.instance_num))
    else:
        indexes = {_index_of(cluster_name, group, name) for name in existing}
    add: list[int] = []
    remove: list[int] = []
    if instance_num > len(indexes):
        candidate = 0
        while len(indexes) + len(add) < instance_num:
            if candidate not in indexes:
                add.append(candidate)
            candidate += 1
    elif instance_num < len(indexes):
        for role in group_spec.roles:
            definition = catalog.roles.get(role)
            if definition is not None and not definition.scale_in:
                raise ResizeError(f"{group}: role {role} cannot be scaled in")
        remove = sorted(indexes, reverse=True)[: len(indexes) - instance_num]
    new_spec = apply_overrides(spec, {group: {"instanceNum": instance_num}})
    return ResizeDiff(
        group=group,
        add=tuple(node_name(cluster_name, group, i) for i in add),
        remove=tuple(node_name(cluster_name, group, i) for i in remove),
        spec=new_spec,
    )
