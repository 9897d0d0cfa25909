"""A cluster's health: its events, and the HEAL operation that brings lost nodes back.

Called by the cluster executor (:mod:`cellplane.controller.clusters.health`): its health pass
finds a SERVICE_READY node whose cell is gone, failed, or was restarted or recreated since
(:func:`cellplane.clusters.health.node_problem`) and calls :func:`begin_heal`, which in one
transaction marks those nodes FAILED, records a ``node-lost`` event naming each, makes the
cluster DEGRADED and writes the HEAL operation and its task. The executor then runs it like a
resume (:meth:`~cellplane.controller.clusters.health.ExecutorHealth._heal`) and records
``node-healed`` or ``heal-failed``. The cluster view (:mod:`cellplane.services.cluster_views`)
shows the last events.

A node whose host is DOWN (:func:`down_hosts`) is lost too when it can be recreated elsewhere
(:func:`can_replace`: a READY host its group's policies allow, and other members in its group
to bring it up to date; a ZooKeeper follower syncs from the leader); otherwise it is left to
come back with its host. Its heal places it again (:func:`replace_on_another_host`), in a fresh
cell with a fresh data volume. The old copy of its data is kept, renamed, on the lost host; the
old cell is forgotten, and the lost host removes its container when it is back (fencing),
before it counts as READY again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.clusters.planner import ClusterPlan, data_volume_name
from cellplane.errors import InsufficientCapacity
from cellplane.ids import utcnow
from cellplane.services import hosts as hosts_mod
from cellplane.services.clusters import begin_operation, place_again
from cellplane.services.context import Services
from cellplane.services.idempotency import Outcome
from cellplane.state.cluster_models import Cluster, ClusterEvent, ClusterNode
from cellplane.state.models import Cell, Host, Volume

__all__ = [
    "HEALABLE_STATES",
    "begin_heal",
    "can_replace",
    "down_hosts",
    "event_views",
    "record_event",
    "replace_on_another_host",
]

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


def down_hosts(s: Session, svc: Services) -> dict[str, str]:
    """Host id -> "host NAME is DOWN (why)", for every DOWN host."""
    now = utcnow()
    out: dict[str, str] = {}
    for h in s.scalars(select(Host)):
        state, why = hosts_mod.host_status(h, now, svc)
        if state == "DOWN":
            out[h.id] = f"host {h.name} is DOWN ({why})"
    return out


def _target(s: Session, svc: Services, plan: ClusterPlan, node: ClusterNode, lost: str) -> str:
    """The READY host node `node` would be recreated on; ValueError naming why there is none:
    it is its group's only member (its data would start empty with nothing to copy it from),
    or no READY host fits it (InsufficientCapacity's reason)."""
    if len(plan.group_nodes(node.group)) < 2:
        raise ValueError(
            f"its {lost}, and it is the only node of group {node.group}: its data has no other "
            "copy to start from elsewhere, so it waits for its host"
        )
    try:
        return place_again(s, svc, plan, node.name, node.cluster_id)
    except InsufficientCapacity as e:
        raise ValueError(f"its {lost}, and no READY host can take it: {e.detail}") from None


def _lost_node(
    s: Session, svc: Services, cluster_id: str, name: str
) -> tuple[Cluster, ClusterNode, Cell, Host, str] | None:
    """The cluster, node, cell and host of node `name` and why its host is DOWN; None when
    its host is not DOWN (any more) or the node has no cell."""
    c = s.get(Cluster, cluster_id)
    node = s.scalar(
        select(ClusterNode).where(ClusterNode.cluster_id == cluster_id, ClusterNode.name == name)
    )
    cell = s.get(Cell, node.cell_id) if node is not None and node.cell_id else None
    if c is None or node is None or cell is None or cell.host_id is None:
        return None
    lost = down_hosts(s, svc).get(cell.host_id)
    host = s.get(Host, cell.host_id)
    if lost is None or host is None:
        return None
    return c, node, cell, host, lost


def can_replace(s: Session, svc: Services, cluster_id: str, plan: ClusterPlan, name: str) -> bool:
    """Whether node `name`, on a DOWN host, can be recreated elsewhere now. The health pass
    counts such a node lost only then: one that cannot move is left as it is and comes back
    with its host (its container is still there), as before hosts were watched."""
    found = _lost_node(s, svc, cluster_id, name)
    if found is None:
        return False
    try:
        _target(s, svc, plan, found[1], found[4])
    except ValueError:
        return False
    return True


def replace_on_another_host(
    s: Session, svc: Services, cluster_id: str, plan: ClusterPlan, name: str
) -> tuple[dict[str, Any], str] | None:
    """Move node `name` off its DOWN host: (the cluster's new placement, what was done), or
    None when its host is not DOWN (any more). The node's old cell row goes (its container is
    fenced on the lost host's return) and its data volume there is renamed and kept, so that
    the node's cell and volume can be made again under their names on the new host. Raises
    ValueError naming why it cannot move (`_target`)."""
    found = _lost_node(s, svc, cluster_id, name)
    if found is None:
        return None
    c, node, cell, old, lost = found
    target = _target(s, svc, plan, node, lost)
    new = s.get(Host, target)
    placement = dict(c.placement or {})
    placement["hosts"] = {**placement.get("hosts", {}), name: target}
    c.placement = placement
    kept = ""
    volume = s.scalar(
        select(Volume).where(
            Volume.project_id == c.project_id, Volume.name == data_volume_name(name)
        )
    )
    if volume is not None and volume.host_id == old.id:
        volume.name = f"{volume.name[:50]}-lost-{volume.id[-6:].lower()}"
        kept = f"; its old data stays on {old.name} as volume {volume.name}"
    old.fence_revision = old.revision  # back, it removes the old container before it is READY
    s.delete(cell)
    node.cell_id = None
    done = f"recreated on host {new.name if new else target} with an empty data volume{kept}"
    record_event(s, c.id, "node-moved", name, f"node {name}: its {lost}: {done}")
    return placement, done
