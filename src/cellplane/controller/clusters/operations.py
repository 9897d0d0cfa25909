"""The cluster operations: CREATE/RESUME (provision), DELETE, STOP, START, RESIZE, CONFIG.

:mod:`cellplane.services.clusters` writes the operation and its task on the cluster row; the
loop (:mod:`cellplane.controller.clusters.loop`) calls :meth:`ExecutorOperations._run`, which
dispatches here. Nodes go up in the plan's waves and down in reverse; each operation ends the
cluster's task through :meth:`~cellplane.controller.clusters.records.ExecutorRecords._finish`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select

from cellplane.clusters.health import node_problem
from cellplane.clusters.planner import diff_for_resize, topology_from_plan
from cellplane.clusters.roles import RenderedRole
from cellplane.clusters.spec import export_spec, parse_spec
from cellplane.controller.clusters.nodes import CELL_START_TIMEOUT, ExecutorNodes
from cellplane.controller.clusters.records import (
    CLUSTER_LABEL,
    NodeFailure,
    OperationContext,
    facts,
    filtered_topology,
)
from cellplane.controller.clusters.supervisor import restart_role_command, write_files_command
from cellplane.ids import utcnow
from cellplane.services import cells as cells_mod
from cellplane.services.clusters import CLUSTERS_TOPIC
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Task

__all__ = ["JOIN_TIMEOUT", "ExecutorOperations"]

JOIN_TIMEOUT = 60.0

Handler = Callable[[OperationContext, Cluster, dict[str, Any]], None]


class ExecutorOperations(ExecutorNodes):
    """One handler per operation, over the node lifecycle below."""

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
        self._handlers()[op](ctx, c, args)

    def _handlers(self) -> Mapping[str, Handler]:
        """Operation name -> its handler (subclasses add theirs: HEAL, in .health)."""
        return {
            "CREATE": self._provision,
            "RESUME": self._provision,
            "DELETE": self._delete,
            "STOP": self._stop,
            "START": self._start,
            "RESIZE": self._resize,
            "CONFIG": self._config,
        }

    def _provision(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
        plan = self._plan(c)
        topology = topology_from_plan(plan, self.catalog)
        self._ensure_rows(c, plan)
        for wave in plan.waves:
            rows = self._nodes(c.id)
            todo: list[str] = []
            for name in wave:
                row = rows[name]
                cell = self._cell(row.cell_id)
                if (
                    row.state == "SERVICE_READY"
                    and cell is not None
                    and node_problem(row.state, row.ready_restarts, facts(cell)) is None
                ):
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

    def _delete(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
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

    def _stop(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
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

    def _start(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
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
                self._revive(ctx, c, name, cell_id, renders)

            failures = self._parallel([n for n in wave if n in rows], go)
            if failures:
                self._finish(c.id, error="\n".join(str(f) for f in failures))
                return
        self._finish(c.id, state="RUNNING")

    def _revive(
        self,
        ctx: OperationContext,
        c: Cluster,
        name: str,
        cell_id: str,
        renders: list[RenderedRole],
    ) -> None:
        """Start the node's existing cell if it is not meant to run, wait until it runs and
        every role passes its probe; the node is SERVICE_READY, or FAILED with the reason."""
        started = time.monotonic()
        cell = self._cell(cell_id)
        if cell is not None and cell.desired_state != "RUNNING":
            with self.svc.db.session() as s:
                out = cells_mod.start(self.svc, s, ctx.principal, cell_id)
            self._publish(*out.topics)
        try:
            running = self._wait_cell(cell_id, name, {"RUNNING"}, CELL_START_TIMEOUT)
            self._node(c.id, name, state="CONFIGURED")
            self._wait_ready(ctx, cell_id, name, renders, started)
        except NodeFailure as err:
            self._node(c.id, name, state="FAILED", message=str(err), log_tail=err.log_tail)
            raise
        self._node(c.id, name, state="SERVICE_READY", message=None, ready_restarts=running.restarts)

    def _resize(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
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
        # Run again after a restart, the nodes an interrupted attempt added have rows already,
        # so the diff does not name them: finish those not ready yet, as a resumed provision
        # does (a node whose cell runs keeps it; a FAILED or CREATED one is made again).
        unfinished = [
            n
            for n in existing
            if n not in diff.remove
            and not (rows[n].state == "SERVICE_READY" and self._cell(rows[n].cell_id))
        ]
        # Add one node at a time: each joins the cluster as it is at that moment.
        present = {n for n in rows if n not in diff.remove}
        for name in [*unfinished, *diff.add]:
            present.add(name)
            row = self._nodes(c.id).get(name)
            if row is not None and row.state == "SERVICE_READY" and self._cell(row.cell_id):
                continue
            topology = filtered_topology(full, present, "existing")
            renders = self._renders(plan, topology, name)
            recreate = (
                row is not None
                and bool(row.cell_id)
                and (name not in unfinished or row.state in ("FAILED", "CREATED"))
            )
            try:
                for r in renders:
                    if r.join:
                        self._join(ctx, c, r, name, present)
                self._bring_up(ctx, c, plan, name, renders, recreate=recreate)
            except NodeFailure as f:
                self._node(c.id, name, state="FAILED", message=str(f), log_tail=f.log_tail)
                self._finish(c.id, error=str(f))
                return
        with self.svc.db.session() as s:
            row2 = s.get(Cluster, c.id)
            if row2 is not None:
                row2.spec = export_spec(diff.spec)
        self._finish(c.id, state="RUNNING")

    def _join(
        self, ctx: OperationContext, c: Cluster, r: RenderedRole, name: str, present: set[str]
    ) -> None:
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

    def _config(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
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
                    cell = self._cell(row.cell_id)
                    for r in renders:
                        self.exec(ctx, row.cell_id, restart_role_command(r.role))
                    self._node(c.id, name, state="CONFIGURED")
                    time.sleep(1.0)
                    self._wait_ready(ctx, row.cell_id, name, renders, started)
                    self._node(
                        c.id,
                        name,
                        state="SERVICE_READY",
                        ready_restarts=cell.restarts if cell is not None else None,
                    )
                    self._step(ctx, f"restart:{name}", "COMPLETED")
                except NodeFailure as f:
                    self._node(c.id, name, state="FAILED", message=str(f), log_tail=f.log_tail)
                    self._finish(c.id, error=str(f))
                    return
        self._finish(c.id, state="RUNNING")
