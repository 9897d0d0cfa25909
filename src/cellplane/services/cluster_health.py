"""A cluster's health: its events, and the HEAL operation that brings lost nodes back.

Called by the cluster executor (:mod:`cellplane.controller.clusters.health`): its health pass
finds a SERVICE_READY node whose cell is gone, failed, or was restarted or recreated since
(:func:`cellplane.clusters.health.node_problem`) and calls :func:`begin_heal`, which in one
transaction marks those nodes FAILED, records a ``node-lost`` event naming each, makes the
cluster DEGRADED and writes the HEAL operation and its task. The executor then runs it like a
resume (:meth:`~cellplane.controller.clusters.health.ExecutorHealth._heal`) and records
``node-healed`` or ``heal-failed``. The cluster view (:mod:`cellplane.services.cluster_views`)
shows the last events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.clusters.planner import ClusterPlan
from cellplane.ids import utcnow
from cellplane.services.clusters import begin_operation
from cellplane.services.idempotency import Outcome
from cellplane.state.cluster_models import Cluster, ClusterEvent, ClusterNode

__all__ = ["HEALABLE_STATES", "begin_heal", "event_views", "record_event"]

# A cluster is watched while it runs: RUNNING, or DEGRADED after a heal that failed.
HEALABLE_STATES = ("RUNNING", "DEGRADED")
EVENTS_SHOWN = 20


def record_event(s: Session, cluster_id: str, kind: str, node: str | None, message: str) -> None:
    s.add(ClusterEvent(cluster_id=cluster_id, at=utcnow(), type=kind, node=node, message=message))


def begin_heal(
    s: Session, cluster_id: str, lost: Mapping[str, str], plan: ClusterPlan
) -> Outcome | None:
    """Mark the `lost` nodes (name -> why) FAILED, record it, and start a HEAL of every node
    that is not ready (in the start order of `plan`, the cluster's plan). None when the cluster changed meanwhile (an operation of its own began,
    or it left the running states): the next pass looks again."""
    c = s.get(Cluster, cluster_id)
    if c is None or c.operation is not None or c.state not in HEALABLE_STATES:
        return None
    rows = {n.name: n for n in s.scalars(select(ClusterNode).where(ClusterNode.cluster_id == c.id))}
    now = utcnow()
    for name, why in sorted(lost.items()):
        node = rows.get(name)
        if node is None:
            continue
        node.state = "FAILED"
        node.message = f"lost: {why}"
        node.role_states = {r: "STARTING" for r in node.roles}
        node.updated_at = now
        record_event(s, c.id, "node-lost", name, f"node {name} lost: {why}; healing it")
    todo = sorted(n for n, row in rows.items() if row.state != "SERVICE_READY")
    order = [n for wave in plan.waves for n in wave if n in todo]
    steps = tuple(f"{n}:{r}" for n in order for r in plan.node(n).roles)
    out = begin_operation(
        s,
        c,
        operation="HEAL",
        state="DEGRADED",
        kind="HEAL_CLUSTER",
        steps=steps or ("RUN",),
        args={"nodes": order},
    )
    c.message = "; ".join(f"node {n} lost: {why}" for n, why in sorted(lost.items()))
    return out


def event_views(s: Session, cluster_id: str, limit: int = EVENTS_SHOWN) -> list[dict[str, Any]]:
    """The cluster's last `limit` events, oldest first."""
    rows = s.scalars(
        select(ClusterEvent)
        .where(ClusterEvent.cluster_id == cluster_id)
        .order_by(ClusterEvent.id.desc())
        .limit(limit)
    ).all()
    return [
        {"at": e.at.isoformat(), "type": e.type, "node": e.node, "message": e.message}
        for e in reversed(rows)
    ]
