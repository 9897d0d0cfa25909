"""Cluster health: notice a node lost behind Cellplane's back and heal it (operation HEAL).

A node counted SERVICE_READY can stop being ready without any cluster operation: its container
removed (``podman rm -f`` on the host's engine) or killed, or its cell FAILED. The agent
restarts or recreates the container (node cells restart ``always``), but the service inside must
be probed again before the node is ready. :meth:`ExecutorHealth.check_health`, run by the loop
on every pass, compares each SERVICE_READY node of a RUNNING (or DEGRADED) cluster with its cell
(:func:`cellplane.clusters.health.node_problem`: the cell gone, FAILED, not running, or a higher
restart count than when the node was found ready) and starts a HEAL through
:func:`cellplane.services.cluster_health.begin_heal`: the nodes FAILED, a ``node-lost`` event
naming each, the cluster DEGRADED. :meth:`ExecutorHealth._heal` then brings each node back as a
resume does (its cell started or waited for and probed; replaced when it failed or is gone) and
records ``node-healed``; the cluster is RUNNING again. A heal that fails records
``heal-failed`` and leaves the cluster DEGRADED with the reason; ``cluster resume`` tries again.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select

from cellplane.clusters.health import node_problem
from cellplane.clusters.planner import ClusterPlan, topology_from_plan
from cellplane.clusters.roles import Topology
from cellplane.controller.clusters.operations import ExecutorOperations, Handler
from cellplane.controller.clusters.records import NodeFailure, OperationContext, facts
from cellplane.services import cluster_health
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell

__all__ = ["ExecutorHealth"]

log = structlog.get_logger("cellplane.clusters.executor")


class ExecutorHealth(ExecutorOperations):
    """The health pass over running clusters, and the HEAL operation it starts."""

    def _handlers(self) -> dict[str, Handler]:
        return {**super()._handlers(), "HEAL": self._heal}

    def check_health(self) -> list[str]:
        """One pass: start a HEAL for every running cluster with a lost node; their ids."""
        lost: dict[str, dict[str, str]] = {}
        # Nodes whose host is DOWN: lost only if they can be recreated elsewhere (below).
        displaced: dict[str, dict[str, str]] = {}
        with self.svc.db.reader() as s:
            down = cluster_health.down_hosts(s, self.svc)
            rows = s.execute(
                select(ClusterNode, Cell)
                .join(Cluster, Cluster.id == ClusterNode.cluster_id)
                .outerjoin(Cell, Cell.id == ClusterNode.cell_id)
                .where(
                    Cluster.state.in_(cluster_health.HEALABLE_STATES),
                    Cluster.operation.is_(None),
                    ClusterNode.state == "SERVICE_READY",
                )
            ).all()
            for node, cell in rows:
                if cell is not None and cell.desired_state == "STOPPED":
                    # An operator stopped this node on purpose (`cell stop`): the view shows it
                    # not ready and the cluster's software sees it gone, but Cellplane does not
                    # undo the operator; `cell start` or `cluster resume` brings it back.
                    continue
                host_down = down.get(cell.host_id or "") if cell else None
                cell_facts = facts(cell, host_down) if cell else None
                why = node_problem(node.state, node.ready_restarts, cell_facts)
                if why is not None:
                    into = displaced if host_down and why == f"its {host_down}" else lost
                    into.setdefault(node.cluster_id, {})[node.name] = why
        started: list[str] = []
        for cluster_id in sorted(lost.keys() | displaced.keys()):
            with self._lock:
                if cluster_id in self._running:  # its own operation is ending: look next pass
                    continue
            with self.svc.db.reader() as s:
                c = s.get(Cluster, cluster_id)
                if c is None:
                    continue
                s.expunge(c)
            plan = self._plan(c)
            nodes = dict(lost.get(cluster_id, {}))
            with self.svc.db.reader() as s:
                for name, why in displaced.get(cluster_id, {}).items():
                    if cluster_health.can_replace(s, self.svc, cluster_id, plan, name):
                        nodes[name] = why
            if not nodes:
                continue
            with self.svc.db.session() as s:
                out = cluster_health.begin_heal(s, cluster_id, nodes, plan)
            if out is not None:
                log.warning("cluster node lost; healing", cluster=c.name, nodes=nodes)
                self._publish(*out.topics)
                started.append(cluster_id)
        return started

    def _event(self, cluster_id: str, kind: str, node: str | None, message: str) -> None:
        with self.svc.db.session() as s:
            cluster_health.record_event(s, cluster_id, kind, node, message)
        self._publish(f"cluster:{cluster_id}")

    def _heal(self, ctx: OperationContext, c: Cluster, args: dict[str, Any]) -> None:
        plan = self._plan(c)
        topology = topology_from_plan(plan, self.catalog)
        wanted = {str(n) for n in args.get("nodes") or []}
        for wave in plan.waves:
            todo = [n for n in wave if n in wanted]
            failures = self._parallel(
                todo, lambda name: self._heal_node(ctx, c, plan, topology, name)
            )
            if failures:
                for f in failures:
                    self._event(c.id, "heal-failed", f.node, f"node {f.node} not healed: {f}")
                self._finish(
                    c.id,
                    error="\n".join(str(f) for f in failures)
                    + "\n(`cellplane cluster resume` tries again)",
                    state="DEGRADED",
                )
                return
        self._finish(c.id, state="RUNNING")

    def _heal_node(
        self,
        ctx: OperationContext,
        c: Cluster,
        plan: ClusterPlan,
        topology: Topology,
        name: str,
    ) -> None:
        row = self._nodes(c.id).get(name)
        if row is None:
            return
        renders = self._renders(plan, topology, name)
        cell = self._cell(row.cell_id)
        moved = self._off_lost_host(c, plan, name) if cell is not None else None
        if moved is not None:
            self._bring_up(ctx, c, plan, name, renders, recreate=False)
            how = moved
        elif cell is None or cell.desired_state == "DELETED":
            self._bring_up(ctx, c, plan, name, renders, recreate=False)
            how = "a new cell was created"
        elif cell.state == "FAILED" or cell.ended_at is not None:
            self._bring_up(ctx, c, plan, name, renders, recreate=True)
            how = "its failed cell was replaced"
        else:
            try:
                self._revive(ctx, c, name, cell.id, renders)
                how = "its cell runs again"
            except NodeFailure as f:
                log.info("node did not come back; replacing its cell", node=name, reason=str(f))
                self._bring_up(ctx, c, plan, name, renders, recreate=True)
                how = f"its cell was replaced ({f.reason})"
        self._event(
            c.id, "node-healed", name, f"node {name} healed: {how}, every role passed its probe"
        )

    def _off_lost_host(self, c: Cluster, plan: ClusterPlan, name: str) -> str | None:
        """When node `name`'s host is DOWN: place it on another host (`c.placement` updated, so
        that its new cell is created there); what was done. None when its host is not DOWN."""
        try:
            with self.svc.db.session() as s:
                out = cluster_health.replace_on_another_host(s, self.svc, c.id, plan, name)
        except ValueError as e:
            raise NodeFailure(name, None, str(e)) from None
        if out is None:
            return None
        c.placement, done = out
        self._publish(f"cluster:{c.id}")
        log.warning("cluster node moved off its DOWN host", cluster=c.name, node=name, how=done)
        return done
