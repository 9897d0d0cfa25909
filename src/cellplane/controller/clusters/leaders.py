"""Leaders: which node leads a role whose members elect one (Patroni), followed on every pass.

A role may declare ``leader``: an HTTP check that passes on the leader only (Patroni's
``/primary``). On each pass of the executor's loop, for every RUNNING or DEGRADED cluster with no
operation running, :meth:`ExecutorLeaders.track_leaders` probes the node recorded as the role's
leader (``role_states[role] == "LEADER"``) through its host agent. While it still passes nothing
else is asked (one exec per such cluster per pass); when it does not (the software failed over,
or no leader is known yet) the role's other ready nodes are probed and the one that passes is
recorded, with a ``leader`` event. The cluster view names the leader and its endpoints
(``leaders``), so a client knows where the primary is without asking Patroni itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import select

from cellplane.clusters.roles import RenderedReadiness, leader_check
from cellplane.controller.clusters.health import ExecutorHealth
from cellplane.controller.clusters.supervisor import probe_command
from cellplane.services.cluster_health import HEALABLE_STATES
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell

__all__ = ["LEADER", "ExecutorLeaders"]

log = structlog.get_logger("cellplane.clusters.executor")

LEADER = "LEADER"
"""The role state of the node that leads its role (the others stay READY)."""


@dataclass(frozen=True)
class _Member:
    name: str
    cell_id: str
    leads: bool


class ExecutorLeaders(ExecutorHealth):
    """The leader pass over running clusters whose roles elect a leader."""

    def _leader_checks(self) -> dict[str, RenderedReadiness]:
        checks = {name: leader_check(role) for name, role in self.catalog.roles.items()}
        return {name: check for name, check in checks.items() if check is not None}

    def track_leaders(self) -> dict[str, dict[str, str | None]]:
        """One pass: per cluster id and role, the node found leading (None: no node passes)."""
        checks = self._leader_checks()
        if not checks:
            return {}
        groups: dict[tuple[str, str], list[_Member]] = {}
        with self.svc.db.reader() as s:
            rows = s.execute(
                select(ClusterNode, Cell)
                .join(Cluster, Cluster.id == ClusterNode.cluster_id)
                .join(Cell, Cell.id == ClusterNode.cell_id)
                .where(
                    Cluster.state.in_(HEALABLE_STATES),
                    Cluster.operation.is_(None),
                    ClusterNode.state == "SERVICE_READY",
                    Cell.state == "RUNNING",
                )
                .order_by(ClusterNode.name)
            ).all()
            for node, cell in rows:
                states = node.role_states or {}
                for role in node.roles:
                    if role in checks:
                        member = _Member(node.name, cell.id, states.get(role) == LEADER)
                        groups.setdefault((node.cluster_id, role), []).append(member)
        found: dict[str, dict[str, str | None]] = {}
        for (cluster_id, role), members in sorted(groups.items()):
            with self._lock:
                if cluster_id in self._running:  # an operation just started: look next pass
                    continue
            leader = self._find_leader(cluster_id, role, members, checks[role])
            found.setdefault(cluster_id, {})[role] = leader
        return found

    def _find_leader(
        self, cluster_id: str, role: str, members: list[_Member], check: RenderedReadiness
    ) -> str | None:
        ctx = self._ctx(cluster_id)
        if ctx is None:
            return None
        argv = probe_command(check)
        before = next((m.name for m in members if m.leads), None)
        leader = None
        # The known leader first: while it leads, that is the only probe.
        for m in sorted(members, key=lambda m: not m.leads):
            code, _out = self.exec(ctx, m.cell_id, argv, timeout=check.timeout)
            if code == 0:
                leader = m.name
                break
        if leader == before:
            return leader
        for m in members:
            if m.leads or m.name == leader:
                self._role_state(cluster_id, m.name, role, LEADER if m.name == leader else "READY")
        message = (
            f"role {role}: {leader} leads" + (f" (was {before})" if before else "")
            if leader
            else f"role {role}: no node leads (was {before})"
        )
        log.info("cluster leader", cluster=cluster_id, role=role, leader=leader, before=before)
        self._event(cluster_id, "leader", leader, message)
        return leader
