"""Node lifecycle: a node's cell and data volume, created, waited for, brought up, deleted.

A node is a cell on the ``host`` image running the supervisor of
:mod:`cellplane.controller.clusters.supervisor`, created through
:func:`cellplane.services.cells.create` like any other cell and pinned to the host the cluster's
placement chose. Its data volume (``<node>-data``) is created only when none of that name exists,
so a recreated node gets its data back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from cellplane.clusters.planner import ClusterPlan, NodeVolume, data_volume_name, node_volume
from cellplane.clusters.roles import RenderedRole, Topology, render_role
from cellplane.controller.clusters.readiness import ExecutorReadiness
from cellplane.controller.clusters.records import (
    CLUSTER_LABEL,
    NodeFailure,
    OperationContext,
)
from cellplane.controller.clusters.supervisor import SUPERVISOR, node_env
from cellplane.errors import CellplaneError, Conflict, NotFound
from cellplane.ids import new_id, utcnow
from cellplane.services import cells as cells_mod
from cellplane.services import volumes as volumes_mod
from cellplane.services.schemas import CellCreate, RestartBody, VolumeCreate, VolumeMount
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell, Project, Volume

__all__ = ["CELL_GONE_TIMEOUT", "CELL_START_TIMEOUT", "ExecutorNodes"]

CELL_START_TIMEOUT = 90.0
CELL_GONE_TIMEOUT = 60.0


class ExecutorNodes(ExecutorReadiness):
    """One node at a time: its cell, its volume, bringing it up; and running nodes in parallel."""

    def _create_cell(
        self,
        ctx: OperationContext,
        c: Cluster,
        plan: ClusterPlan,
        name: str,
        renders: Sequence[RenderedRole],
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
            isolation=plan.spec.group(node.group).isolation,
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

    def _volume(self, ctx: OperationContext, name: str) -> Volume | None:
        with self.svc.db.reader() as s:
            v = s.scalar(
                select(Volume).where(Volume.project_id == ctx.project, Volume.name == name)
            )
            if v is not None:
                s.expunge(v)
            return v

    def _ensure_volume(self, ctx: OperationContext, node: str, volume: NodeVolume) -> None:
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

    def _delete_volume(self, ctx: OperationContext, node: str) -> None:
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

    def _delete_cell(self, ctx: OperationContext, cell_id: str | None) -> None:
        cell = self._cell(cell_id)
        if cell is None or cell_id is None:
            return
        if cell.desired_state != "DELETED":
            with self.svc.db.session() as s:
                out = cells_mod.delete(self.svc, s, ctx.principal, cell_id, owner=ctx.cluster_id)
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

    def _bring_up(
        self,
        ctx: OperationContext,
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
            running = self._wait_cell(cell_id, name, {"RUNNING"}, CELL_START_TIMEOUT)
            self._node(ctx.cluster_id, name, state="CONFIGURED")
            self._wait_ready(ctx, cell_id, name, renders, started)
            # The restart count it was found ready with: a higher one later means its container
            # was restarted or recreated since, and the node is probed again (.health).
            self._node(
                ctx.cluster_id,
                name,
                state="SERVICE_READY",
                message=None,
                ready_restarts=running.restarts,
            )
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
