"""SQLAlchemy models of clusters: one row per cluster, one per node (one cell each).

Written by :mod:`cellplane.services.clusters` (desired operations, in the request's transaction)
and by :mod:`cellplane.controller.clusters` (observed progress of nodes and the cluster). Imported by
the Alembic environment so that migrations see these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cellplane.state.models import Base, UTCDateTime

__all__ = ["CLUSTER_STATES", "NODE_STATES", "Cluster", "ClusterEvent", "ClusterNode"]

CLUSTER_STATES = (
    "PROVISIONING",
    "RUNNING",
    "PROVISION_ERROR",
    "STOPPED",
    "STOPPING",
    "STARTING",
    "DELETING",
    "UPDATING",
    # RUNNING, but a node was lost (its cell failed, or its container was removed or restarted
    # outside Cellplane): the executor heals it (operation HEAL) and the cluster is RUNNING again.
    "DEGRADED",
)
NODE_STATES = ("CREATED", "CONFIGURED", "SERVICE_READY", "FAILED", "STOPPED")


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    distro: Mapped[str | None] = mapped_column(String(63))
    type: Mapped[str | None] = mapped_column(String(128))
    # The spec in Serengeti's camelCase export form (what `export` answers).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), index=True)
    # The pending operation the executor runs: CREATE, RESUME, DELETE, STOP, START, RESIZE, CONFIG,
    # HEAL (a lost node brought back).
    operation: Mapped[str | None] = mapped_column(String(16))
    # Operation arguments (e.g. resize group and count, keep volumes on delete).
    operation_args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128), default="")
    # {"hosts": {node: host id}, "notes": [placement policies that could not be honoured]}
    placement: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClusterNode(Base):
    __tablename__ = "cluster_nodes"
    __table_args__ = (UniqueConstraint("cluster_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    group: Mapped[str] = mapped_column(String(63))
    index: Mapped[int] = mapped_column(Integer)
    roles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Per role: "STARTING" | "READY" | "FAILED".
    role_states: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cell_id: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    # The node cell's restart count when the node was last found SERVICE_READY (None: unknown).
    ready_restarts: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ClusterEvent(Base):
    """Something that happened to a cluster outside its operations: node-lost, node-healed,
    heal-failed (written by the cluster executor's health pass and its HEAL operation)."""

    __tablename__ = "cluster_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(32))
    node: Mapped[str | None] = mapped_column(String(63))
    message: Mapped[str] = mapped_column(Text, default="")
