"""The cluster executor's records: its operation context, task steps, node rows, the cluster's end.

The bottom of the executor's class chain (:class:`ExecutorRecords` <- readiness <- nodes <-
operations <- :class:`~cellplane.controller.clusters.loop.ClusterExecutor`): everything the
executor reads and writes about a cluster in the database, one short transaction each, and the
pure helpers they use (:func:`set_step`, :func:`failure_message`, :func:`filtered_topology`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from cellplane.clusters.catalog import Catalog
from cellplane.clusters.health import CellFacts
from cellplane.clusters.planner import ClusterPlan, plan_cluster
from cellplane.clusters.roles import Topology
from cellplane.clusters.spec import parse_spec
from cellplane.clusters.spec_model import ClusterSpec
from cellplane.ids import utcnow
from cellplane.scheduler import Resources
from cellplane.services import agent_tls
from cellplane.services import cells as cells_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.clusters import CLUSTERS_TOPIC, load_catalog
from cellplane.services.context import Principal, Services
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell, Flavor, Project, Task, Tenant

__all__ = [
    "CLUSTER_LABEL",
    "ExecutorRecords",
    "NodeFailure",
    "OperationContext",
    "facts",
    "failure_message",
    "filtered_topology",
    "flavors_of",
    "set_step",
]

CLUSTER_LABEL = cells_mod.CLUSTER_LABEL  # the owner label on a node's cell


class NodeFailure(Exception):
    """A node did not reach its target state; carries what the cluster message shows."""

    def __init__(self, node: str, role: str | None, reason: str, log_tail: str = "") -> None:
        self.node = node
        self.role = role
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(failure_message(node, role, reason, log_tail))


def failure_message(node: str, role: str | None, reason: str, log_tail: str) -> str:
    """``node N role R: reason`` and the tail of the role's log, for the cluster message."""
    head = f"node {node}" + (f" role {role}" if role else "") + f": {reason}"
    if log_tail.strip():
        return f"{head}\n--- last lines of the {role or 'node'} log ---\n{log_tail.rstrip()}"
    return head


def facts(cell: Cell, host_down: str | None = None) -> CellFacts:
    """What :func:`cellplane.clusters.health.node_problem` needs of a node's cell (`host_down`:
    why its host is DOWN, if it is)."""
    return CellFacts(cell.desired_state, cell.state, cell.restarts or 0, cell.message, host_down)


def set_step(task: Task, name: str, state: str, now: datetime, *, error: str | None = None) -> bool:
    """Set one step's state without touching the others (node steps finish in any order)."""
    if task.state in tasks_mod.TERMINAL:
        return False
    steps = [dict(s) for s in task.steps]
    changed = False
    for s in steps:
        if s["name"] != name or s["state"] == state:
            continue
        s["state"] = state
        s["started_at"] = s["started_at"] or now.isoformat()
        if state in ("COMPLETED", "ERROR", "SKIPPED"):
            s["finished_at"] = now.isoformat()
        if error is not None:
            s["error"] = error
        changed = True
    if not changed:
        return False
    task.steps = steps
    done = sum(1 for s in steps if s["state"] in ("COMPLETED", "SKIPPED"))
    task.progress = int(100 * done / len(steps)) if steps else 100
    task.started_at = task.started_at or now
    if task.state == "QUEUED":
        task.state = "STARTED"
    return True


def flavors_of(rows: Sequence[Flavor]) -> dict[str, Resources]:
    return {f.name: Resources(f.cpu, f.memory_mb, f.disk_gb) for f in rows}


def filtered_topology(topology: Topology, nodes: set[str], state: str) -> Topology:
    """`topology` with only the members in `nodes`: what a node joining a running cluster sees."""
    members = {
        role: tuple(m for m in ms if m.name in nodes) for role, ms in topology.members.items()
    }
    return replace(
        topology,
        members={r: ms for r, ms in members.items() if ms},
        state="existing" if state == "existing" else "new",
    )


@dataclass
class OperationContext:
    """Who runs an operation on which cluster (the cluster's creator, as a service principal)."""

    cluster_id: str
    project: str
    principal: Principal
    task_id: str | None


class ExecutorRecords:
    """The executor's state and its reads and writes of cluster, node, task and cell rows."""

    def __init__(self, svc: Services, catalog: Catalog | None = None) -> None:
        self.svc = svc
        self._catalog = catalog
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._http_client: httpx.Client | None = None
        self._http_lock = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        """The client of the readiness probes' exec calls to agents, made with the first probe.

        From the one factory of agent clients (`services.agent_tls`: pinned mutual TLS, or plain
        HTTP); no CA bundle is loaded, which with httpx's default would hold ~1.8 MB in every
        server, clusters or not."""
        with self._http_lock:
            if self._http_client is None:
                self._http_client = agent_tls.sync_client(self.svc, timeout=70)
            return self._http_client

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog()
        return self._catalog

    def close(self) -> None:
        with self._http_lock:
            if self._http_client is not None:
                self._http_client.close()
                self._http_client = None

    def _publish(self, *topics: str) -> None:
        self.svc.notifier.publish(*topics)

    def _ctx(self, cluster_id: str) -> OperationContext | None:
        with self.svc.db.reader() as s:
            c = s.get(Cluster, cluster_id)
            if c is None:
                return None
            p = s.get(Project, c.project_id)
            assert p is not None
            t = s.get(Tenant, p.tenant_id)
            principal = Principal(
                subject=c.created_by or f"cluster:{c.name}",
                tenant_id=p.tenant_id,
                tenant=t.name if t else "",
                roles=("project-member",),
                kind="service",
            )
            return OperationContext(c.id, p.id, principal, c.task_id)

    def _step(self, ctx: OperationContext, name: str, state: str, error: str | None = None) -> None:
        if ctx.task_id is None:
            return
        with self.svc.db.session() as s:
            task = s.get(Task, ctx.task_id)
            changed = task is not None and set_step(task, name, state, utcnow(), error=error)
        if changed:
            self._publish(f"task:{ctx.task_id}", f"cluster:{ctx.cluster_id}")

    def _node(self, cluster_id: str, name: str, **values: Any) -> None:
        with self.svc.db.session() as s:
            node = s.scalar(
                select(ClusterNode).where(
                    ClusterNode.cluster_id == cluster_id, ClusterNode.name == name
                )
            )
            if node is None:
                return
            for k, v in values.items():
                setattr(node, k, v)
            node.updated_at = utcnow()
        self._publish(f"cluster:{cluster_id}")

    def _role_state(self, cluster_id: str, name: str, role: str, state: str) -> None:
        with self.svc.db.session() as s:
            node = s.scalar(
                select(ClusterNode).where(
                    ClusterNode.cluster_id == cluster_id, ClusterNode.name == name
                )
            )
            if node is None:
                return
            node.role_states = {**(node.role_states or {}), role: state}
            node.updated_at = utcnow()
        self._publish(f"cluster:{cluster_id}")

    def _nodes(self, cluster_id: str) -> dict[str, ClusterNode]:
        with self.svc.db.reader() as s:
            rows = s.scalars(select(ClusterNode).where(ClusterNode.cluster_id == cluster_id)).all()
            for n in rows:
                s.expunge(n)
            return {n.name: n for n in rows}

    def _finish(
        self, cluster_id: str, *, error: str | None = None, state: str | None = None
    ) -> None:
        now = utcnow()
        topics = [f"cluster:{cluster_id}", CLUSTERS_TOPIC]
        with self.svc.db.session() as s:
            c = s.get(Cluster, cluster_id)
            if c is None:
                return
            task = s.get(Task, c.task_id) if c.task_id else None
            if error is not None:
                c.state = state or "PROVISION_ERROR"
                c.message = error
                if task is not None:
                    tasks_mod.fail(task, error, now)
            else:
                if state is not None:
                    c.state = state
                c.message = None
                if task is not None and task.state not in tasks_mod.TERMINAL:
                    steps = [dict(x) for x in task.steps]
                    for x in steps:
                        if x["state"] not in ("COMPLETED", "SKIPPED"):
                            x["state"] = "COMPLETED"
                            x["started_at"] = x["started_at"] or now.isoformat()
                            x["finished_at"] = now.isoformat()
                    task.steps = steps
                    task.progress = 100
                    task.state = "COMPLETED"
                    task.started_at = task.started_at or now
                    task.finished_at = now
            if task is not None:
                topics.append(f"task:{task.id}")
            c.operation = None
            c.operation_args = {}
            c.updated_at = now
        self._publish(*topics)

    def _plan(self, c: Cluster, spec: ClusterSpec | None = None) -> ClusterPlan:
        with self.svc.db.reader() as s:
            flavors = flavors_of(s.scalars(select(Flavor)).all())
        plan = plan_cluster(
            spec or parse_spec(c.spec),
            self.catalog,
            cluster_name=c.name,
            distro=c.distro,
            flavors=flavors,
        )
        # Per project and cluster name, not id: a cluster created again on the volumes a
        # `DELETE ?keepVolumes=true` kept finds the passwords its data was made with.
        return replace(plan, secret=self.svc.sealer.derive(f"cluster/{c.project_id}/{c.name}"))

    def _cell(self, cell_id: str | None) -> Cell | None:
        if cell_id is None:
            return None
        with self.svc.db.reader() as s:
            cell = s.get(Cell, cell_id)
            if cell is not None:
                s.expunge(cell)
            return cell

    def _find_cell(self, ctx: OperationContext, name: str) -> Cell | None:
        with self.svc.db.reader() as s:
            cell = s.scalar(select(Cell).where(Cell.project_id == ctx.project, Cell.name == name))
            if cell is not None:
                s.expunge(cell)
            return cell
