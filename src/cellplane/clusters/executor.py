"""The cluster deploy executor: turns a cluster's pending operation into cells, probes and states.

Started by :func:`cellplane.api.app.create_app`'s lifespan (:func:`run_cluster_executor`, next
to the controller). :mod:`cellplane.services.clusters` writes an operation (CREATE, RESUME,
DELETE, STOP, START, RESIZE, CONFIG) and a task on the cluster row and publishes the
``clusters`` topic; this loop picks it up and runs it in a worker thread, one operation per
cluster at a time. Every step is idempotent: after a server restart the operation still on the
row runs again and skips what is already done (a node that is SERVICE_READY with a running cell
is left alone).

Nodes are cells on the ``host`` image (see :mod:`cellplane.clusters.supervisor` for what runs
inside); they are created through :func:`cellplane.services.cells.create` like any other cell,
and probed through the same agent exec path as ``POST /v1/cells/{id}/exec``.

Data volumes: a node with a disk size whose roles declare a ``data_dir`` gets one volume of the
node's disk size, named ``<node>-data`` (:func:`cellplane.clusters.planner.data_volume_name`),
in the cluster's project, mounted at that ``data_dir`` (:func:`~cellplane.clusters.planner.
node_volume`). Volumes have no labels: a cluster's volumes are found by that name from its node
list. An existing volume of the name is reused, so a node recreated by ``resume``, ``start`` or a
retry keeps its data (and a cluster re-created under the same name adopts volumes kept by
``DELETE ?keepVolumes=true``). Deleting the cluster deletes its nodes' volumes once their cells
are gone, unless ``keepVolumes`` is set; a scale-in always deletes the removed nodes' volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
import structlog
from sqlalchemy import select

from cellplane.clusters.catalog import Catalog
from cellplane.clusters.planner import (
    ClusterPlan,
    NodeVolume,
    data_volume_name,
    diff_for_resize,
    node_volume,
    plan_cluster,
    topology_from_plan,
)
from cellplane.clusters.roles import RenderedRole, Topology, render_role
from cellplane.clusters.spec import ClusterSpec, export_spec, parse_spec
from cellplane.clusters.supervisor import (
    SUPERVISOR,
    node_env,
    probe_command,
    restart_role_command,
    tail_command,
    write_files_command,
)
from cellplane.errors import CellplaneError, Conflict, NotFound
from cellplane.ids import new_id, utcnow
from cellplane.scheduler import Resources
from cellplane.services import agent_proxy
from cellplane.services import cells as cells_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services import volumes as volumes_mod
from cellplane.services.clusters import CLUSTERS_TOPIC, load_catalog
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import CellCreate, RestartBody, VolumeCreate, VolumeMount
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell, Flavor, Project, Task, Tenant, Volume

__all__ = [
    "CLUSTERS_TOPIC",
    "ClusterExecutor",
    "NodeFailure",
    "failure_message",
    "filtered_topology",
    "flavors_of",
    "run_cluster_executor",
    "set_step",
]

log = structlog.get_logger("cellplane.clusters.executor")

CELL_START_TIMEOUT = 90.0
CELL_GONE_TIMEOUT = 60.0
JOIN_TIMEOUT = 60.0
CLUSTER_LABEL = "cellplane.cluster"


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
class _Ctx:
    cluster_id: str
    project: str
    principal: Principal
    task_id: str | None


class ClusterExecutor:
    """Runs cluster operations; one instance per server process."""

    def __init__(self, svc: Services, catalog: Catalog | None = None) -> None:
        self.svc = svc
        self._catalog = catalog
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=70)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog()
        return self._catalog

    def close(self) -> None:
        self._http.close()

    # --- scheduling of operations ---

    def pending(self) -> list[str]:
        with self.svc.db.reader() as s:
            ids = s.scalars(select(Cluster.id).where(Cluster.operation.is_not(None))).all()
        with self._lock:
            return [i for i in ids if i not in self._running]

    def claim(self, cluster_id: str) -> bool:
        with self._lock:
            if cluster_id in self._running:
                return False
            self._running.add(cluster_id)
            return True

    def release(self, cluster_id: str) -> None:
        with self._lock:
            self._running.discard(cluster_id)

    def run_one(self, cluster_id: str) -> None:
        """Run the cluster's pending operation to its end (or its failure)."""
        try:
            self._run(cluster_id)
        except Exception as exc:
            log.exception("cluster operation failed", cluster=cluster_id)
            self._finish(cluster_id, error=f"internal error: {exc}")
        finally:
            self.release(cluster_id)

    # --- helpers over the database ---

    def _publish(self, *topics: str) -> None:
        self.svc.notifier.publish(*topics)

    def _ctx(self, cluster_id: str) -> _Ctx | None:
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
            return _Ctx(c.id, p.id, principal, c.task_id)

    def _step(self, ctx: _Ctx, name: str, state: str, error: str | None = None) -> None:
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
        return plan_cluster(
            spec or parse_spec(c.spec),
            self.catalog,
            cluster_name=c.name,
            distro=c.distro,
            flavors=flavors,
        )

    # --- cells ---

    def _cell(self, cell_id: str | None) -> Cell | None:
        if cell_id is None:
            return None
        with self.svc.db.reader() as s:
            cell = s.get(Cell, cell_id)
            if cell is not None:
                s.expunge(cell)
            return cell

    def _find_cell(self, ctx: _Ctx, name: str) -> Cell | None:
        with self.svc.db.reader() as s:
            cell = s.scalar(select(Cell).where(Cell.project_id == ctx.project, Cell.name == name))
            if cell is not None:
                s.expunge(cell)
            return cell

    def _create_cell(
        self, ctx: _Ctx, c: Cluster, plan: ClusterPlan, name: str, renders: Sequence[RenderedRole]
    ) -> str:
        existing = self._find_cell(ctx, name)
        if existing is not None and existing.desired_state != "DELETED":
            return existing.id
        node = plan.node(name)
        volume = node_volume(node, self.catalog)
        if volume is not None:
            self._ensure_volume(ctx, name, volume)
        body = CellCreate(
            name=name,
            image="host",
            cpu=max(node.resources.cpu, 0.01),
            memory_mb=max(node.resources.memory_mb, 64),
            disk_gb=node.resources.disk_gb,
            command=["/bin/bash", "-c", SUPERVISOR],
            env=node_env(renders, generation=1),
            labels={CLUSTER_LABEL: c.id, "cluster": c.name, "node-group": node.group},
            restart=RestartBody(policy="always"),
            stop_timeout=10.0,
            volumes=[VolumeMount(volume=volume.name, path=volume.path)] if volume else [],
        )
        with self.svc.db.session() as s:
            project = s.get(Project, ctx.project)
            assert project is not None
            # The node goes where the cluster was placed as a whole (its group's policies).
            pin = (c.placement or {}).get("hosts", {}).get(name)
            out = cells_mod.create(self.svc, s, ctx.principal, project.name, body, pin_host=pin)
        self._publish(*out.topics)
        return str(out.body["entity"]["id"])

    # --- data volumes ---

    def _volume(self, ctx: _Ctx, name: str) -> Volume | None:
        with self.svc.db.reader() as s:
            v = s.scalar(
                select(Volume).where(Volume.project_id == ctx.project, Volume.name == name)
            )
            if v is not None:
                s.expunge(v)
            return v

    def _ensure_volume(self, ctx: _Ctx, node: str, volume: NodeVolume) -> None:
        """Create the node's data volume unless it exists: a recreated node reuses its data."""
        deadline = time.monotonic() + CELL_GONE_TIMEOUT
        while (v := self._volume(ctx, volume.name)) is not None and v.state == "DELETING":
            # Deleted moments ago (a scale-in, then out again): its host drops it first.
            if time.monotonic() > deadline:
                raise NodeFailure(
                    node, None, f"its data volume {volume.name} is still being deleted"
                )
            time.sleep(0.2)
        if v is not None:
            return
        with self.svc.db.session() as s:
            project = s.get(Project, ctx.project)
            assert project is not None
            body = VolumeCreate(name=volume.name, size_gb=volume.size_gb)
            volumes_mod.create(self.svc, s, ctx.principal, project.name, body)

    def _delete_volume(self, ctx: _Ctx, node: str) -> None:
        """Delete the node's data volume, if any; call it once the node's cell is gone."""
        v = self._volume(ctx, data_volume_name(node))
        if v is None or v.state != "READY":
            return
        try:
            volumes_mod.delete(self.svc, ctx.principal, v.id)
        except NotFound:
            return
        except Conflict as e:  # another cell mounts it
            raise NodeFailure(node, None, f"cannot delete its data volume: {e.detail}") from None

    def _delete_cell(self, ctx: _Ctx, cell_id: str | None) -> None:
        cell = self._cell(cell_id)
        if cell is None or cell_id is None:
            return
        if cell.desired_state != "DELETED":
            with self.svc.db.session() as s:
                out = cells_mod.delete(self.svc, s, ctx.principal, cell_id)
            self._publish(*out.topics)
        deadline = time.monotonic() + CELL_GONE_TIMEOUT
        while self._cell(cell_id) is not None:
            if time.monotonic() > deadline:
                raise NodeFailure(cell.name, None, "the cell was not removed in time")
            time.sleep(0.2)

    def _wait_cell(self, cell_id: str, node: str, states: set[str], timeout: float) -> Cell:
        deadline = time.monotonic() + timeout
        while True:
            cell = self._cell(cell_id)
            if cell is None:
                raise NodeFailure(node, None, "its cell disappeared")
            if cell.state in states and (cell.state != "RUNNING" or cell.container_id):
                return cell
            if cell.state == "FAILED" and "FAILED" not in states:
                raise NodeFailure(node, None, f"its cell failed: {cell.message or ''}".rstrip())
            if time.monotonic() > deadline:
                raise NodeFailure(
                    node, None, f"its cell is {cell.state}, not {'/'.join(sorted(states))}"
                )
            time.sleep(0.1)

    def exec(
        self, ctx: _Ctx, cell_id: str, command: list[str], timeout: float = 30
    ) -> tuple[int, str]:
        """Run `command` in the cell through its host agent: (exit code, output)."""
        target = cells_mod.locate(self.svc, ctx.principal, cell_id)
        try:
            data = agent_proxy.exec_sync(self._http, target, command, timeout)
        except agent_proxy.AgentUnreachable as e:
            return 255, f"agent unreachable: {e.cause}"
        except agent_proxy.AgentRefused as e:
            return 255, f"exec failed on the host ({e.status}): {e.text[:300]}"
        return int(data.get("exit_code", 255)), str(data.get("output", ""))

    def _tail(self, ctx: _Ctx, cell_id: str, role: str) -> str:
        with contextlib.suppress(CellplaneError):
            code, out = self.exec(ctx, cell_id, tail_command(role))
            if code == 0:
                return out
        return ""

    # --- readiness ---

    def _wait_ready(
        self, ctx: _Ctx, cell_id: str, name: str, renders: Sequence[RenderedRole], started: float
    ) -> None:
        """Probe each role in order until it passes; raise NodeFailure at its deadline."""
        for r in renders:
            if r.readiness is None:
                self._role_state(ctx.cluster_id, name, r.role, "READY")
                self._step(ctx, f"{name}:{r.role}", "COMPLETED")
                continue
            self._step(ctx, f"{name}:{r.role}", "STARTED")
            deadline = max(started, time.monotonic()) + r.readiness.timeout
            argv = probe_command(r.readiness)
            last = ""
            while True:
                try:
                    code, last = self.exec(ctx, cell_id, argv, timeout=max(5.0, r.readiness.period))
                except CellplaneError as e:
                    code, last = 255, str(e)
                if code == 0:
                    break
                if time.monotonic() > deadline:
                    tail = self._tail(ctx, cell_id, r.role)
                    self._role_state(ctx.cluster_id, name, r.role, "FAILED")
                    reason = f"not ready after {r.readiness.timeout:g} s"
                    if last.strip():
                        reason += f" (last probe: {last.strip()[-200:]})"
                    raise NodeFailure(name, r.role, reason, tail)
                time.sleep(r.readiness.period)
            self._role_state(ctx.cluster_id, name, r.role, "READY")
            self._step(ctx, f"{name}:{r.role}", "COMPLETED")

    def _bring_up(
        self,
        ctx: _Ctx,
        c: Cluster,
        plan: ClusterPlan,
        name: str,
        renders: Sequence[RenderedRole],
        *,
        recreate: bool,
    ) -> None:
        """Create (or recreate) one node's cell and wait until every role is ready."""
        row = self._nodes(ctx.cluster_id).get(name)
        try:
            if recreate and row is not None and row.cell_id:
                self._delete_cell(ctx, row.cell_id)
            started = time.monotonic()
            cell_id = self._create_cell(ctx, c, plan, name, renders)
            self._node(
                ctx.cluster_id,
                name,
                cell_id=cell_id,
                state="CREATED",
                message=None,
                log_tail=None,
                role_states={r.role: "STARTING" for r in renders},
            )
            self._wait_cell(cell_id, name, {"RUNNING"}, CELL_START_TIMEOUT)
            self._node(ctx.cluster_id, name, state="CONFIGURED")
            self._wait_ready(ctx, cell_id, name, renders, started)
            self._node(ctx.cluster_id, name, state="SERVICE_READY", message=None)
        except NodeFailure as f:
            self._node(ctx.cluster_id, name, state="FAILED", message=str(f), log_tail=f.log_tail)
            if f.role is not None:
                self._step(ctx, f"{name}:{f.role}", "ERROR", error=f.reason)
            raise

    def _ensure_rows(self, c: Cluster, plan: ClusterPlan) -> None:
        now = utcnow()
        with self.svc.db.session() as s:
            have = set(
                s.scalars(select(ClusterNode.name).where(ClusterNode.cluster_id == c.id)).all()
            )
            for n in plan.nodes:
                if n.name not in have:
                    s.add(
                        ClusterNode(
                            id=new_id("cln"),
                            cluster_id=c.id,
                            name=n.name,
                            group=n.group,
                            index=n.index,
                            roles=list(n.roles),
                            role_states={},
                            cell_id=None,
                            state="CREATED",
                            created_at=now,
                            updated_at=now,
                        )
                    )

    def _renders(self, plan: ClusterPlan, topology: Topology, name: str) -> list[RenderedRole]:
        node = plan.node(name)
        return [render_role(self.catalog.roles[r], topology, name) for r in node.roles]

    def _parallel(self, names: Sequence[str], fn: Callable[[str], None]) -> list[NodeFailure]:
        failures: list[NodeFailure] = []
        if not names:
            return failures
        with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
            futures = {pool.submit(fn, n): n for n in names}
            for fut, n in futures.items():
                try:
                    fut.result()
                except NodeFailure as f:
                    failures.append(f)
                except CellplaneError as e:
                    failures.append(NodeFailure(n, None, e.detail))
        return failures

    # --- operations ---

    def _run(self, cluster_id: str) -> None:
        ctx = self._ctx(cluster_id)
        if ctx is None:
            return
        with self.svc.db.reader() as s:
            c = s.get(Cluster, cluster_id)
            if c is None or c.operation is None:
                return
            s.expunge(c)
            op, args = c.operation, dict(c.operation_args or {})
        if ctx.task_id:
            with self.svc.db.session() as s:
                task = s.get(Task, ctx.task_id)
                if task is not None and task.state == "QUEUED":
                    task.state = "STARTED"
                    task.started_at = utcnow()
            self._publish(f"task:{ctx.task_id}")
        handler: Mapping[str, Callable[[_Ctx, Cluster, dict[str, Any]], None]] = {
            "CREATE": self._provision,
            "RESUME": self._provision,
            "DELETE": self._delete,
            "STOP": self._stop,
            "START": self._start,
            "RESIZE": self._resize,
            "CONFIG": self._config,
        }
        handler[op](ctx, c, args)

    def _provision(self, ctx: _Ctx, c: Cluster, args: dict[str, Any]) -> None:
        plan = self._plan(c)
        topology = topology_from_plan(plan, self.catalog)
        self._ensure_rows(c, plan)
        for wave in plan.waves:
            rows = self._nodes(c.id)
            todo: list[str] = []
            for name in wave:
                row = rows[name]
                cell = self._cell(row.cell_id)
                if row.state == "SERVICE_READY" and cell is not None and cell.state == "RUNNING":
                    for role in row.roles:
                        self._step(ctx, f"{name}:{role}", "COMPLETED")
                    continue
                todo.append(name)

            def up(name: str, rows: dict[str, ClusterNode] = rows) -> None:
                row = rows[name]
                recreate = row.cell_id is not None and row.state in ("FAILED", "CREATED")
                self._bring_up(
                    ctx, c, plan, name, self._renders(plan, topology, name), recreate=recreate
                )

            failures = self._parallel(todo, up)
            if failures:
                self._finish(c.id, error="\n".join(str(f) for f in failures))
                return
        self._finish(c.id, state="RUNNING")

    def _delete(self, ctx: _Ctx, c: Cluster, args: dict[str, Any]) -> None:
        rows = self._nodes(c.id)

        def drop(name: str) -> None:
            self._delete_cell(ctx, rows[name].cell_id)
            self._step(ctx, f"delete:{name}", "COMPLETED")

        failures = self._parallel(sorted(rows), drop)
        if failures:
            self._finish(c.id, error="\n".join(str(f) for f in failures), state="DELETING")
            return
        # Cells adopted by name but never recorded on a node (a crash between create and record).
        for name in rows:
            stray = self._find_cell(ctx, name)
            if stray is not None and stray.labels.get(CLUSTER_LABEL) == c.id:
                self._delete_cell(ctx, stray.id)
        if not args.get("keepVolumes"):
            failures = self._parallel(sorted(rows), lambda name: self._delete_volume(ctx, name))
            if failures:
                self._finish(c.id, error="\n".join(str(f) for f in failures), state="DELETING")
                return
        task_id = c.task_id
        self._finish(c.id, state="DELETING")
        with self.svc.db.session() as s:
            for n in s.scalars(select(ClusterNode).where(ClusterNode.cluster_id == c.id)).all():
                s.delete(n)
            row = s.get(Cluster, c.id)
            if row is not None:
                s.delete(row)
        self._publish(CLUSTERS_TOPIC, f"cluster:{c.id}", *([f"task:{task_id}"] if task_id else []))

    def _stop(self, ctx: _Ctx, c: Cluster, args: dict[str, Any]) -> None:
        plan = self._plan(c)
        rows = self._nodes(c.id)
        for wave in reversed(plan.waves):

            def halt(name: str) -> None:
                cell_id = rows[name].cell_id
                cell = self._cell(cell_id)
                if cell is not None and cell_id is not None and cell.desired_state != "STOPPED":
                    with self.svc.db.session() as s:
                        out = cells_mod.stop(self.svc, s, ctx.principal, cell_id, None)
                    self._publish(*out.topics)
                if cell_id is not None and cell is not None:
                    self._wait_cell(cell_id, name, {"STOPPED", "EXITED"}, CELL_START_TIMEOUT)
                self._node(c.id, name, state="STOPPED")
                self._step(ctx, f"stop:{name}", "COMPLETED")

            failures = self._parallel([n for n in wave if n in rows], halt)
            if failures:
                self._finish(c.id, error="\n".join(str(f) for f in failures))
                return
        self._finish(c.id, state="STOPPED")

    def _start(self, ctx: _Ctx, c: Cluster, args: dict[str, Any]) -> None:
        plan = self._plan(c)
        topology = topology_from_plan(plan, self.catalog)
        rows = self._nodes(c.id)
        for wave in plan.waves:

            def go(name: str) -> None:
                cell_id = rows[name].cell_id
                renders = self._renders(plan, topology, name)
                if cell_id is None or self._cell(cell_id) is None:
                    self._bring_up(ctx, c, plan, name, renders, recreate=False)
                    return
                started = time.monotonic()
                cell = self._cell(cell_id)
                if cell is not None and cell.desired_state != "RUNNING":
                    with self.svc.db.session() as s:
                        out = cells_mod.start(self.svc, s, ctx.principal, cell_id)
                    self._publish(*out.topics)
                try:
                    self._wait_cell(cell_id, name, {"RUNNING"}, CELL_START_TIMEOUT)
                    self._node(c.id, name, state="CONFIGURED")
                    self._wait_ready(ctx, cell_id, name, renders, started)
                except NodeFailure as err:
                    self._node(c.id, name, state="FAILED", message=str(err), log_tail=err.log_tail)
                    raise
                self._node(c.id, name, state="SERVICE_READY", message=None)

            failures = self._parallel([n for n in wave if n in rows], go)
            if failures:
                self._finish(c.id, error="\n".join(str(f) for f in failures))
                return
        self._finish(c.id, state="RUNNING")

    def _resize(self, ctx: _Ctx, c: Cluster, args: dict[str, Any]) -> None:
        group = str(args["nodeGroup"])
        count = int(args["instanceNum"])
        spec = parse_spec(c.spec)
        rows = self._nodes(c.id)
        existing = [n for n, r in rows.items() if r.group == group]
        diff = diff_for_resize(
            spec,
            self.catalog,
            cluster_name=c.name,
            group=group,
            instance_num=count,
            existing=existing,
        )
        plan = self._plan(c, diff.spec)
        full = topology_from_plan(plan, self.catalog)
        self._ensure_rows(c, plan)
        # Remove first (scale in), highest index first.
        for name in diff.remove:
            try:
                self._delete_cell(ctx, rows[name].cell_id)
                self._delete_volume(ctx, name)  # no keepVolumes here: a removed node's data goes
            except NodeFailure as f:
                self._finish(c.id, error=str(f))
                return
            with self.svc.db.session() as s:
                for n in s.scalars(
                    select(ClusterNode).where(
                        ClusterNode.cluster_id == c.id, ClusterNode.name == name
                    )
                ).all():
                    s.delete(n)
            self._step(ctx, f"remove:{name}", "COMPLETED")
        # Add one node at a time: each joins the cluster as it is at that moment.
        present = {n for n in rows if n not in diff.remove}
        for name in diff.add:
            present.add(name)
            row = self._nodes(c.id).get(name)
            if row is not None and row.state == "SERVICE_READY" and self._cell(row.cell_id):
                continue
            topology = filtered_topology(full, present, "existing")
            renders = self._renders(plan, topology, name)
            try:
                for r in renders:
                    if r.join:
                        self._join(ctx, c, r, name, present)
                self._bring_up(
                    ctx, c, plan, name, renders, recreate=row is not None and bool(row.cell_id)
                )
            except NodeFailure as f:
                self._node(c.id, name, state="FAILED", message=str(f), log_tail=f.log_tail)
                self._finish(c.id, error=str(f))
                return
        with self.svc.db.session() as s:
            row2 = s.get(Cluster, c.id)
            if row2 is not None:
                row2.spec = export_spec(diff.spec)
        self._finish(c.id, state="RUNNING")

    def _join(self, ctx: _Ctx, c: Cluster, r: RenderedRole, name: str, present: set[str]) -> None:
        """Run the role's join command on a ready member; retry while the cluster refuses."""
        assert r.join is not None
        rows = self._nodes(c.id)
        members = [
            n
            for n, row in sorted(rows.items())
            if n != name and n in present and r.role in row.roles and row.cell_id
        ]
        if not members:
            raise NodeFailure(name, r.role, "no running member to join through")
        deadline = time.monotonic() + JOIN_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            for member in members:
                cell_id = rows[member].cell_id
                assert cell_id is not None
                code, last = self.exec(ctx, cell_id, list(r.join))
                if code == 0:
                    self._step(ctx, f"join:{name}", "COMPLETED")
                    return
                if "already" in last.lower() and "member" in last.lower():
                    return
            time.sleep(1.0)
        raise NodeFailure(name, r.role, f"join refused: {last.strip()[-300:]}")

    def _config(self, ctx: _Ctx, c: Cluster, args: dict[str, Any]) -> None:
        plan = self._plan(c)
        topology = topology_from_plan(plan, self.catalog)
        rows = self._nodes(c.id)
        generation = int(args.get("generation", 2))
        for wave in plan.waves:
            for name in wave:  # rolling: one node at a time
                row = rows.get(name)
                if row is None or row.cell_id is None:
                    continue
                renders = self._renders(plan, topology, name)
                try:
                    code, out = self.exec(
                        ctx, row.cell_id, write_files_command(renders, generation)
                    )
                    if code != 0:
                        raise NodeFailure(name, None, f"cannot write its files: {out.strip()}")
                    started = time.monotonic()
                    for r in renders:
                        self.exec(ctx, row.cell_id, restart_role_command(r.role))
                    self._node(c.id, name, state="CONFIGURED")
                    time.sleep(1.0)
                    self._wait_ready(ctx, row.cell_id, name, renders, started)
                    self._node(c.id, name, state="SERVICE_READY")
                    self._step(ctx, f"restart:{name}", "COMPLETED")
                except NodeFailure as f:
                    self._node(c.id, name, state="FAILED", message=str(f), log_tail=f.log_tail)
                    self._finish(c.id, error=str(f))
                    return
        self._finish(c.id, state="RUNNING")


async def run_cluster_executor(svc: Services, *, tick: float = 5.0) -> None:
    """The server's background loop: run every cluster's pending operation in a worker thread.

    Workers are daemon threads: a server stopping mid-operation leaves the operation on the
    cluster row, and the next server process runs it again from where the state says it is.
    """
    executor = ClusterExecutor(svc)
    try:
        while True:
            seen = svc.notifier.version(CLUSTERS_TOPIC)
            try:
                pending = await asyncio.to_thread(executor.pending)
            except Exception:
                log.exception("cluster executor pass failed")
                pending = []
            for cluster_id in pending:
                if executor.claim(cluster_id):
                    threading.Thread(
                        target=executor.run_one,
                        args=(cluster_id,),
                        name=f"cp-cluster-{cluster_id}",
                        daemon=True,
                    ).start()
            await svc.notifier.wait(CLUSTERS_TOPIC, seen, tick)
    finally:
        executor.close()
