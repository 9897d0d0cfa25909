"""Clusters: the rules behind the cluster routes that change something: admission, the operation.

Called by :mod:`cellplane.api.routes_clusters`. Every change is one transaction that validates
the request (a bad spec, a shortfall of capacity, a role whose binaries the image lacks: refused
with nothing written), writes the cluster's pending operation and its task, and returns an
:class:`Outcome` whose topics wake the cluster executor (:mod:`cellplane.controller.clusters`), which does the work.
What the read routes show (catalog, clusters, exports) is :mod:`cellplane.services.cluster_views`.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.clusters import (
    Catalog,
    CatalogError,
    ClusterPlan,
    ClusterSpec,
    PlanError,
    ResizeError,
    RoleError,
    SpecError,
    apply_overrides,
    default_catalog_paths,
    diff_for_resize,
    export_spec,
    missing_requirements,
    parse_spec,
    plan_cluster,
    render_role,
    topology_from_plan,
)
from cellplane.clusters.deployable import deployable_distros
from cellplane.clusters.placement import NodePlacement, place_nodes
from cellplane.clusters.planner import data_volume_name, group_resources, node_name
from cellplane.clusters.spec import unused_fields
from cellplane.errors import Conflict, FieldError, InsufficientCapacity, NotFound, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.services import hosts as hosts_mod
from cellplane.services import quotas as quotas_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.cells import check_project, project_for, with_host_labels
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell, Flavor, Project, Volume
from cellplane.validation import DNS_LABEL_MSG, is_dns_label

__all__ = [
    "CLUSTERS_TOPIC",
    "ClusterCreate",
    "ConfigBody",
    "ResizeBody",
    "begin_operation",
    "config",
    "create",
    "delete",
    "host_has",
    "load_catalog",
    "resize",
    "resume",
    "start",
    "stop",
    "visible",
]

CLUSTERS_TOPIC = "clusters"


class ClusterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=63)
    distro: str | None = Field(default=None, max_length=63)
    type: str | None = Field(default=None, max_length=128)
    spec: dict[str, Any] | None = None
    overrides: dict[str, dict[str, Any]] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not is_dns_label(v):
            raise ValueError(DNS_LABEL_MSG)
        return v


class ResizeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    node_group: str = Field(alias="nodeGroup", min_length=1, max_length=63)
    instance_num: int = Field(alias="instanceNum", ge=0, le=1000)


class ConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    configuration: dict[str, Any]


@functools.cache
def _load_catalog() -> Catalog:
    return Catalog.load(default_catalog_paths())


def load_catalog() -> Catalog:
    """The catalog of this server process, loaded once from the default paths.

    A broken catalog file is a clear 409 naming the file and field (and is read again on the
    next request, so fixing the file is enough), never a traceback.
    """
    try:
        return _load_catalog()
    except CatalogError as exc:
        raise Conflict(f"the cluster catalog cannot be loaded: {exc}") from None


load_catalog.cache_clear = _load_catalog.cache_clear  # type: ignore[attr-defined]


def host_has(path: str) -> bool:
    """Whether the host image (the host's own root) has `path` (a path or a command name)."""
    if path.startswith("/"):
        return Path(path).exists()
    return shutil.which(path) is not None


# --- helpers ---


def _spec_errors(exc: SpecError, prefix: str) -> ValidationFailed:
    return ValidationFailed(
        [FieldError(f"{prefix}.{i.path}" if i.path else prefix, i.message) for i in exc.issues]
        or [FieldError(prefix, str(exc))]
    )


def _flavors(s: Session) -> dict[str, scheduler.Resources]:
    return {
        f.name: scheduler.Resources(f.cpu, f.memory_mb, f.disk_gb)
        for f in s.scalars(select(Flavor))
    }


def _plan(s: Session, spec: ClusterSpec, name: str, distro: str | None) -> ClusterPlan:
    try:
        return plan_cluster(
            spec, load_catalog(), cluster_name=name, distro=distro, flavors=_flavors(s)
        )
    except PlanError as exc:
        raise ValidationFailed.field("spec", str(exc)) from None


def _check_capacity(
    s: Session,
    svc: Services,
    plan: ClusterPlan,
    *,
    exclude: set[str] | None = None,
    cluster_id: str | None = None,
) -> NodePlacement:
    """Place the plan's nodes (all, or those not in `exclude`) with their group's policies:
    honoured across the hosts of a multi-host deployment, relaxed (and reported) only on a
    single-host one (see clusters/placement.py); refuse the request when a node fits nowhere.
    Nodes already running count towards per-host limits."""
    requests = [r for r in plan.placement_requests if not exclude or r.id not in exclude]
    if not requests:
        return NodePlacement(hosts={}, notes=(), unplaced=())
    hosts = with_host_labels(hosts_mod.snapshot(s, svc, utcnow()))
    if cluster_id is not None:
        hosts = _with_members(s, hosts, cluster_id, plan.cluster_name)
    result = place_nodes(hosts, requests, relax=len(hosts) <= 1)
    if result.unplaced:
        need_cpu = sum(r.resources.cpu for r in requests)
        need_mem = sum(r.resources.memory_mb for r in requests)
        first = result.unplaced[0]
        raise InsufficientCapacity(
            f"cluster {plan.cluster_name} needs {len(requests)} nodes "
            f"({need_cpu:g} cpu, {need_mem} MB memory); {len(result.unplaced)} cannot be placed: "
            f"{first.request_id}: {first.reason}"
        )
    return result


def place_again(s: Session, svc: Services, plan: ClusterPlan, name: str, cluster_id: str) -> str:
    """A host for node `name` of a running cluster whose host is lost, the others counted."""
    keep = {r.id for r in plan.placement_requests} - {name}
    return _check_capacity(s, svc, plan, exclude=keep, cluster_id=cluster_id).hosts[name]


def _with_members(
    s: Session, hosts: list[scheduler.HostSnapshot], cluster_id: str, cluster_name: str
) -> list[scheduler.HostSnapshot]:
    """Hosts with the cluster's running node-group members counted (for instancePerHost and
    groupAssociations of the nodes being added)."""
    counts: dict[str, dict[str, int]] = {}
    rows = s.execute(
        select(ClusterNode.group, Cell.host_id)
        .join(Cell, Cell.id == ClusterNode.cell_id)
        .where(ClusterNode.cluster_id == cluster_id, Cell.host_id.is_not(None))
    ).all()
    for group, host_id in rows:
        per = counts.setdefault(str(host_id), {})
        key = f"{cluster_name}/{group}"
        per[key] = per.get(key, 0) + 1
    return [
        dataclasses.replace(h, groups={**h.groups, **counts[h.id]}) if h.id in counts else h
        for h in hosts
    ]


def _admit_groups(
    s: Session,
    project_id: str,
    spec: ClusterSpec,
    cluster_name: str,
    counts: Mapping[str, Iterable[int]] | None = None,
) -> None:
    """Quota for the nodes `spec` asks for, from each group's size and count, before any node
    is built (the planner only runs on an admitted request). `counts`: per group, the node
    indexes to admit (default: all of them, for a create)."""
    try:
        sized = group_resources(spec, _flavors(s))
    except PlanError as exc:
        raise ValidationFailed.field("spec", str(exc)) from None
    cat = load_catalog()
    resources: list[scheduler.Resources] = []
    volume_names: dict[str, int] = {}
    for group, res in sized:
        if counts is None:
            indexes: Iterable[int] = range(group.instance_num)
        elif group.name in counts:
            indexes = counts[group.name]
        else:
            continue
        keeps_data = res.disk_gb > 0 and any(
            r in cat.roles and cat.roles[r].data_dir is not None for r in group.roles
        )
        for index in indexes:
            resources.append(res)
            if keeps_data:
                volume_names[data_volume_name(node_name(cluster_name, group.name, index))] = (
                    res.disk_gb
                )
    have = _existing_volumes(s, project_id, list(volume_names))
    quotas_mod.admit_nodes(
        s,
        project_id,
        resources,
        volumes_gb=sum(size for name, size in volume_names.items() if name not in have),
    )


def _existing_volumes(s: Session, project_id: str, names: list[str]) -> set[str]:
    have: set[str] = set()
    for i in range(0, len(names), 500):
        have.update(
            s.scalars(
                select(Volume.name).where(
                    Volume.project_id == project_id,
                    Volume.state == "READY",
                    Volume.name.in_(names[i : i + 500]),
                )
            )
        )
    return have


def _check_binaries(plan: ClusterPlan, available: Callable[[str], bool]) -> None:
    cat = load_catalog()
    problems = missing_requirements(plan, cat, available)
    if problems:
        working = deployable_distros(cat, available)
        here = (
            f"distros deployable here: {', '.join(working)}"
            if working
            else "no distro is deployable here: run `make up` to install their software"
        )
        raise Conflict(
            f"cluster {plan.cluster_name} cannot run on the host image: "
            + "; ".join(problems)
            + f". {here} (`cellplane cluster distros` says why the others are not)"
        )


def visible(
    s: Session, principal: Principal, cluster_id: str, permission: str = "cells:write"
) -> Cluster:
    c = s.get(Cluster, cluster_id)
    if c is None:
        raise NotFound(f"cluster {cluster_id!r} does not exist")
    check_project(s, principal, c.project_id, permission, f"cluster {cluster_id!r}")
    return c


def _steps_for(plan: ClusterPlan, names: set[str] | None = None) -> tuple[str, ...]:
    order = [n for wave in plan.waves for n in wave]
    return tuple(
        f"{name}:{role}"
        for name in order
        if names is None or name in names
        for role in plan.node(name).roles
    )


def begin_operation(
    s: Session,
    c: Cluster,
    *,
    operation: str,
    state: str,
    kind: str,
    steps: tuple[str, ...],
    args: Mapping[str, Any] | None = None,
) -> Outcome:
    if c.operation is not None:
        raise Conflict(f"cluster {c.name!r} is busy ({c.state}); wait for its task {c.task_id}")
    now = utcnow()
    p = s.get(Project, c.project_id)
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind=kind,
        entity_kind="cluster",
        entity_id=c.id,
        tenant_id=p.tenant_id if p else None,
        project_id=c.project_id,
        steps=steps or ("RUN",),
        now=now,
    )
    c.operation = operation
    c.operation_args = dict(args or {})
    c.state = state
    c.task_id = task.id
    c.message = None
    c.updated_at = now
    s.flush()
    return Outcome(
        202,
        tasks_mod.task_view(task),
        f"/v1/tasks/{task.id}",
        (CLUSTERS_TOPIC, f"task:{task.id}", f"cluster:{c.id}"),
    )


def _existing_cells(s: Session, project_id: str, names: list[str]) -> list[str]:
    taken: list[str] = []
    for i in range(0, len(names), 500):
        taken.extend(
            s.scalars(
                select(Cell.name).where(
                    Cell.project_id == project_id, Cell.name.in_(names[i : i + 500])
                )
            )
        )
    return taken


def _node_names(s: Session, c: Cluster) -> list[str]:
    return list(
        s.scalars(
            select(ClusterNode.name)
            .where(ClusterNode.cluster_id == c.id)
            .order_by(ClusterNode.name)
        )
    )


# --- operations ---


def create(
    svc: Services, s: Session, principal: Principal, project_name: str, body: ClusterCreate
) -> Outcome:
    project = project_for(s, principal, project_name, "cells:write")
    cat = load_catalog()
    if body.spec is None and body.distro is None:
        raise ValidationFailed.field("distro", "give a distro, a spec, or both")
    if body.distro is not None and body.distro not in cat.distros:
        known = ", ".join(sorted(cat.distros))
        raise ValidationFailed.field("distro", f"no distro named {body.distro!r} (known: {known})")
    if body.spec is not None:
        try:
            spec = parse_spec(body.spec)
        except SpecError as exc:
            raise _spec_errors(exc, "spec") from None
    else:
        assert body.distro is not None
        try:
            spec = cat.find_spec(body.distro, body.type)
        except CatalogError as exc:
            raise ValidationFailed.field("type", str(exc)) from None
    if body.overrides:
        try:
            spec = apply_overrides(spec, body.overrides)
        except SpecError as exc:
            raise _spec_errors(exc, "overrides") from None
    if s.scalar(
        select(Cluster.id).where(Cluster.project_id == project.id, Cluster.name == body.name)
    ):
        raise Conflict(f"a cluster named {body.name!r} already exists in project {project.name!r}")
    # Absurd sizes were refused by parse_spec; quota is checked on the groups' sizes and
    # counts before the planner builds a single node.
    _admit_groups(s, project.id, spec, body.name)
    plan = _plan(s, spec, body.name, body.distro)
    taken = _existing_cells(s, project.id, [n.name for n in plan.nodes])
    if taken:
        raise Conflict(f"cells named {', '.join(sorted(taken))} already exist in {project.name!r}")
    # Software first: a distro that cannot run here is refused for that, whatever the capacity.
    _check_binaries(plan, host_has)
    placed = _check_capacity(s, svc, plan)
    try:  # Render every node now: a template error is the request's fault, not the executor's.
        topo = topology_from_plan(plan, cat)
        for node in plan.nodes:
            for role in node.roles:
                render_role(cat.roles[role], topo, node.name)
    except RoleError as exc:
        raise ValidationFailed.field("spec", str(exc)) from None
    now = utcnow()
    c = Cluster(
        id=new_id("clu"),
        project_id=project.id,
        name=body.name,
        distro=body.distro,
        type=body.type,
        spec=export_spec(spec),
        state="PROVISIONING",
        operation=None,
        operation_args={},
        placement={"hosts": dict(placed.hosts), "notes": [*placed.notes, *unused_fields(spec)]},
        created_by=principal.subject,
        created_at=now,
        updated_at=now,
    )
    s.add(c)
    s.flush()
    return begin_operation(
        s,
        c,
        operation="CREATE",
        state="PROVISIONING",
        kind="CREATE_CLUSTER",
        steps=_steps_for(plan),
    )


def resume(svc: Services, s: Session, principal: Principal, cluster_id: str) -> Outcome:
    c = visible(s, principal, cluster_id)
    if c.state not in ("PROVISION_ERROR", "PROVISIONING", "RUNNING", "DEGRADED"):
        raise Conflict(f"cluster {c.name!r} is {c.state}; only a failed provisioning resumes")
    plan = _plan(s, parse_spec(c.spec), c.name, c.distro)
    ready = set(
        s.scalars(
            select(ClusterNode.name).where(
                ClusterNode.cluster_id == c.id, ClusterNode.state == "SERVICE_READY"
            )
        )
    )
    todo = {n.name for n in plan.nodes} - ready
    return begin_operation(
        s,
        c,
        operation="RESUME",
        state="PROVISIONING",
        kind="RESUME_CLUSTER",
        steps=_steps_for(plan, todo) or ("RUN",),
    )


def delete(
    svc: Services, s: Session, principal: Principal, cluster_id: str, keep_volumes: bool
) -> Outcome:
    c = visible(s, principal, cluster_id)
    steps = tuple(f"delete:{n}" for n in _node_names(s, c))
    return begin_operation(
        s,
        c,
        operation="DELETE",
        state="DELETING",
        kind="DELETE_CLUSTER",
        steps=steps,
        args={"keepVolumes": keep_volumes},
    )


def stop(svc: Services, s: Session, principal: Principal, cluster_id: str) -> Outcome:
    c = visible(s, principal, cluster_id)
    if c.state not in ("RUNNING", "PROVISION_ERROR", "STOPPED", "DEGRADED"):
        raise Conflict(f"cluster {c.name!r} is {c.state}")
    steps = tuple(f"stop:{n}" for n in _node_names(s, c))
    return begin_operation(
        s, c, operation="STOP", state="STOPPING", kind="STOP_CLUSTER", steps=steps
    )


def start(svc: Services, s: Session, principal: Principal, cluster_id: str) -> Outcome:
    c = visible(s, principal, cluster_id)
    if c.state not in ("STOPPED", "RUNNING", "PROVISION_ERROR", "DEGRADED"):
        raise Conflict(f"cluster {c.name!r} is {c.state}")
    plan = _plan(s, parse_spec(c.spec), c.name, c.distro)
    return begin_operation(
        s, c, operation="START", state="STARTING", kind="START_CLUSTER", steps=_steps_for(plan)
    )


def resize(
    svc: Services, s: Session, principal: Principal, cluster_id: str, body: ResizeBody
) -> Outcome:
    c = visible(s, principal, cluster_id)
    if c.state != "RUNNING":
        raise Conflict(f"cluster {c.name!r} is {c.state}; only a RUNNING cluster resizes")
    spec = parse_spec(c.spec)
    existing = list(
        s.scalars(
            select(ClusterNode.name).where(
                ClusterNode.cluster_id == c.id, ClusterNode.group == body.node_group
            )
        )
    )
    try:
        spec.group(body.node_group)
    except KeyError:
        raise ValidationFailed.field(
            "nodeGroup", f"cluster {c.name!r} has no node group {body.node_group!r}"
        ) from None
    try:
        diff = diff_for_resize(
            spec,
            load_catalog(),
            cluster_name=c.name,
            group=body.node_group,
            instance_num=body.instance_num,
            existing=existing,
        )
    except ResizeError as exc:
        raise Conflict(str(exc)) from None
    except SpecError as exc:
        raise _spec_errors(exc, "instanceNum") from None
    added = [int(n.rsplit("-", 1)[1]) for n in diff.add]
    _admit_groups(s, c.project_id, diff.spec, c.name, {body.node_group: added})
    plan = _plan(s, diff.spec, c.name, c.distro)
    present = set(_node_names(s, c))
    placed = _check_capacity(s, svc, plan, exclude=present, cluster_id=c.id)
    before = dict(c.placement or {})
    c.placement = {
        "hosts": {**before.get("hosts", {}), **placed.hosts},
        "notes": list(dict.fromkeys([*before.get("notes", []), *placed.notes])),
    }
    steps = tuple(f"remove:{n}" for n in diff.remove)
    for name in diff.add:
        roles = plan.node(name).roles
        if any(load_catalog().roles[r].join for r in roles if r in load_catalog().roles):
            steps += (f"join:{name}",)
        steps += tuple(f"{name}:{r}" for r in roles)
    return begin_operation(
        s,
        c,
        operation="RESIZE",
        state="UPDATING",
        kind="RESIZE_CLUSTER",
        steps=steps,
        args={"nodeGroup": body.node_group, "instanceNum": body.instance_num},
    )


def config(
    svc: Services, s: Session, principal: Principal, cluster_id: str, body: ConfigBody
) -> Outcome:
    c = visible(s, principal, cluster_id)
    if c.state != "RUNNING":
        raise Conflict(f"cluster {c.name!r} is {c.state}; only a RUNNING cluster is reconfigured")
    data = dict(c.spec)
    data["configuration"] = body.configuration
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        raise _spec_errors(exc, "configuration") from None
    plan = _plan(s, spec, c.name, c.distro)
    c.spec = export_spec(spec)
    steps = tuple(f"restart:{n.name}" for wave in plan.waves for n in map(plan.node, wave))
    return begin_operation(
        s,
        c,
        operation="CONFIG",
        state="UPDATING",
        kind="CONFIGURE_CLUSTER",
        steps=steps,
        args={"generation": int(utcnow().timestamp())},
    )
