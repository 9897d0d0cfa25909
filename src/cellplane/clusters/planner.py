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
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from cellplane.clusters.catalog import Catalog
from cellplane.clusters.configuration import (
    configuration_issues,
    deep_merge,
    undeployable_reason,
)
from cellplane.clusters.deployable import install_hint
from cellplane.clusters.errors import PlanError, ResizeError
from cellplane.clusters.ordering import group_start_waves, role_dependencies, start_order
from cellplane.clusters.roles import Member, Topology, missing_binaries
from cellplane.clusters.spec import apply_overrides
from cellplane.clusters.spec_model import MAX_CLUSTER_NODES, ClusterSpec, NodeGroupSpec, cell_name
from cellplane.scheduler import PlacementRequest, Resources

__all__ = [
    "DATA_VOLUME_SUFFIX",
    "DEFAULT_INSTANCE_TYPE",
    "ClusterPlan",
    "NodePlan",
    "NodeVolume",
    "ResizeDiff",
    "data_volume_name",
    "diff_for_resize",
    "group_resources",
    "missing_requirements",
    "node_name",
    "node_volume",
    "plan_cluster",
    "topology_from_plan",
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
    secret: str = field(default="", repr=False)
    """The cluster's shared secret (templates: ``cluster.secret``); set by the executor."""

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

    The group's cell name is :func:`~cellplane.clusters.spec_model.cell_name`: the group name
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
        isolation=group.isolation or "standard",
    )


def group_resources(
    spec: ClusterSpec, flavors: Mapping[str, Resources]
) -> list[tuple[NodeGroupSpec, Resources]]:
    """Each group with the size of one of its nodes, without building any node.

    The clusters service checks quota on this (count x size per group) before planning.
    Raises PlanError for an unknown flavor or a group without any size.
    """
    return [(group, _resources(group, i, flavors)) for i, group in enumerate(spec.node_groups)]


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
    :data:`~cellplane.clusters.spec_model.MAX_CLUSTER_NODES` nodes is refused before any node
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
    group_waves = group_start_waves(live, deps)
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
        g.name: deep_merge(plan.spec.configuration or {}, g.configuration or {})
        for g in plan.spec.node_groups
    }
    configuration = {node.name: per_group[node.group] for node in plan.nodes}
    return Topology(
        cluster_name=plan.cluster_name,
        members={role: tuple(ms) for role, ms in members.items()},
        ports=ports,
        state=state,
        configuration=configuration,
        secret=plan.secret,
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
            missing = missing_binaries(catalog.roles[role], available)
            if missing:
                problems.append(
                    f"role {role} needs {', '.join(missing)}, which the image does not have: "
                    + install_hint(catalog, catalog.distros.get(plan.distro or ""), role)
                )
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
