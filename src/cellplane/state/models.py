"""SQLAlchemy models: the desired and observed state of everything Cellplane manages.

Services write desired state here in one transaction per change; the controller and the agent
status handler write observed state. Nothing here reads the clock or makes ids: callers pass them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Cell",
    "CellEvent",
    "CellNetwork",
    "Credential",
    "DockerEndpoint",
    "Flavor",
    "Host",
    "IdempotencyRecord",
    "Image",
    "Leadership",
    "Network",
    "Project",
    "Setting",
    "Task",
    "Tenant",
    "Volume",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back as aware UTC datetimes.

    SQLite keeps no zone and PostgreSQL answers in the session's zone; the API must not depend on
    either, so values are normalised on the way in and out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    # The weakest isolation class its cells may run with (None: any); see docs/isolation.md.
    min_isolation: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    min_isolation: Mapped[str | None] = mapped_column(String(16))  # as the tenant's, per project
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Network(Base):
    """A project's network. Each project has its default one (`state.networks` makes it).

    `name` is the engine-side name (`cp-<project id>` for the default network, so deployments
    made before networks were a resource are adopted unchanged); `subnet` is the control plane's
    allocation from a pool, sized for the project's cell quota (`state.networks`), never two
    networks with overlapping subnets.
    """

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # A project's networks go with it (a tenant's projects are deleted in bulk).
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    subnet: Mapped[str] = mapped_column(String(43), unique=True)
    driver: Mapped[str] = mapped_column(String(16), default="bridge")
    # The network's VXLAN id across hosts (the overlay), unique, allocated with the network.
    vni: Mapped[int | None] = mapped_column(Integer, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Its user's labels, and the name a Docker client asked for when that is not a DNS label
    # (Compose's `proj_front` for `proj-front`; None otherwise).
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    docker_name: Mapped[str | None] = mapped_column(String(255))
    # Never loaded (lazy="raise"): it tells the unit of work to insert the project first.
    project: Mapped[Project] = relationship(lazy="raise")


class Host(Base):
    __tablename__ = "hosts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    address: Mapped[str] = mapped_column(String(255))
    agent_url: Mapped[str | None] = mapped_column(String(255))
    # The agent's own secret, presented by the server when it proxies logs and exec to the agent;
    # stored sealed (cellplane.sealing).
    agent_secret: Mapped[str | None] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    maintenance: Mapped[bool] = mapped_column(default=False)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    zone: Mapped[str | None] = mapped_column(String(63))
    cpu: Mapped[float] = mapped_column(Float)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    # What the agent counted: physical cores and the CPU overcommit ratio (cpu = cores x ratio).
    cpu_cores: Mapped[int | None] = mapped_column(Integer)
    cpu_ratio: Mapped[float | None] = mapped_column(Float)
    # Bumped in the same transaction as any change to what this host should run; agents long-poll it.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The host's container engine as its agent reports it: UP or DOWN (a host whose engine is
    # DOWN takes no new cells), since when, the last failure, and how many outages it came back from.
    engine_state: Mapped[str] = mapped_column(String(16), default="UP", server_default="UP")
    engine_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    engine_message: Mapped[str | None] = mapped_column(Text)
    engine_outages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Fencing: cells were moved off this host at `fence_revision` (it was DOWN); it is READY
    # again only once its agent confirmed (`fenced_revision`) that it removed their containers.
    fence_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fenced_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The host revision at which a cell last left this host (moved, drained, failed over): an
    # agent whose view is older gets a full view, so it removes what no longer belongs here.
    departed_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The isolation classes its engine can run (the agent probes at start), and how (runtime,
    # platform), for `host show`.
    isolation: Mapped[list[Any]] = mapped_column(
        JSON, default=lambda: ["standard"], server_default='["standard"]'
    )
    isolation_detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # `cellplane host revoke`: its certificates are revoked, it is refused until it joins again.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # SHA-256 of the host certificate issued last: pinned by the server on the agent's endpoint.
    cert_sha256: Mapped[str | None] = mapped_column(String(64))
    # That certificate (PEM): the only one the server trusts on the agent's endpoint.
    cert_pem: Mapped[str | None] = mapped_column(Text)


class JoinToken(Base):
    """A token agents join with (`cellplane host token create`): only its hash is kept; it may
    expire and may have a number of uses (None: no limit)."""

    __tablename__ = "join_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    uses_left: Mapped[int | None] = mapped_column(Integer)
    used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Flavor(Base):
    __tablename__ = "flavors"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    cpu: Mapped[float] = mapped_column(Float)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)


class Image(Base):
    __tablename__ = "images"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "host" | "archive"
    path: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    engine_ref: Mapped[str | None] = mapped_column(String(255))
    refs: Mapped[list[Any]] = mapped_column(default=list)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Cell(Base):
    __tablename__ = "cells"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # The control plane's IPAM: never two cells with one address on one network.
        Index("ix_cells_network_address", "network_id", "network_address", unique=True),
        # An agent's delta: its host's cells changed after the revision it has (migration 0023).
        Index("ix_cells_host_id_host_rev", "host_id", "host_rev"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"), index=True)
    # The network the cell joins (its project's default network unless said otherwise).
    network_id: Mapped[str | None] = mapped_column(ForeignKey("networks.id"), index=True)
    network: Mapped[Network | None] = relationship(lazy="raise")  # flush order only
    flavor: Mapped[str | None] = mapped_column(String(63))
    cpu: Mapped[float] = mapped_column(Float)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    command: Mapped[list[Any] | None] = mapped_column(JSON)
    # Container fields the Docker API sets (None: the image's own; the hostname defaults to the name).
    entrypoint: Mapped[list[Any] | None] = mapped_column(JSON)
    workdir: Mapped[str | None] = mapped_column(String(4096))
    user: Mapped[str | None] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(63))
    # Hardening opt-ins (docs/operations.md): a read-only root; a pids limit (None: the default).
    read_only: Mapped[bool] = mapped_column(default=False, server_default=false())
    pids_limit: Mapped[int | None] = mapped_column(Integer)
    env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ports: Mapped[list[Any]] = mapped_column(default=list)
    volumes: Mapped[list[Any]] = mapped_column(default=list)
    restart_policy: Mapped[str] = mapped_column(String(16), default="never")
    isolation: Mapped[str] = mapped_column(
        String(16), default="standard", server_default="standard"
    )
    max_retries: Mapped[int | None] = mapped_column(Integer)
    stop_timeout: Mapped[float] = mapped_column(Float, default=10.0)
    # Its health check ({command, shell, interval_s, timeout_s, retries, start_period_s}, None:
    # none) and what its host's agent last reported of it ({status, failing_streak, log}).
    healthcheck: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The grace period of the stop, restart or delete under way when its request named one
    # (`docker stop -t 0`, `docker rm -f`), None: the cell's own `stop_timeout`. One request's,
    # never the cell's: the next start, stop or restart replaces it.
    stop_request_timeout: Mapped[float | None] = mapped_column(Float)
    desired_state: Mapped[str] = mapped_column(String(16), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    # A host this cell must run on (a cluster node placed with its group's policies), or None.
    pinned_host_id: Mapped[str | None] = mapped_column(String(40))
    # Scheduling: "spread" | "binpack" (None: spread), and (anti-)affinity terms with other cells
    # ([{"selector": {k: v}, "anti": bool, "soft": bool}]).
    placement: Mapped[str | None] = mapped_column(String(16))
    affinity: Mapped[list[Any] | None] = mapped_column(JSON)
    # Bumped each time the cell is assigned to a host anew (moved, failed over): a container of
    # an older generation is stale and its agent removes it.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Host revision at which this cell last changed for its host: agents fetch deltas by it.
    host_rev: Mapped[int] = mapped_column(Integer, default=0, index=True)
    container_id: Mapped[str | None] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(String(64))
    # The cell's address on its network, allocated by the control plane (`state.networks`).
    network_address: Mapped[str | None] = mapped_column(String(45))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    restart_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the cell ended for good (its container vanished and the restart policy keeps it down);
    # only a start or restart request after it brings the cell back.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    task_id: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DockerEndpoint(Base):
    """A project's Docker Engine API listener (`cellplane.dockerapi`): its own TLS port on the
    server. One per project; it goes with its project."""

    __tablename__ = "docker_endpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), unique=True
    )
    port: Mapped[int] = mapped_column(Integer, unique=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CellNetwork(Base):
    """A cell on one of its project's networks, with its address there (the control plane's).

    Every cell has one row per network it joins; `position` 0 is its first network, the one
    `cells.network_id` / `network_address` also name (kept so older readers see it). The unique
    (network, address) pair keeps two attachments off one address, whichever position.
    """

    __tablename__ = "cell_networks"
    __table_args__ = (
        UniqueConstraint("network_id", "address", name="uq_cell_networks_address"),
        UniqueConstraint("cell_id", "position", name="uq_cell_networks_position"),
    )
    cell_id: Mapped[str] = mapped_column(
        ForeignKey("cells.id", ondelete="CASCADE"), primary_key=True
    )
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), primary_key=True, index=True)
    address: Mapped[str | None] = mapped_column(String(45))
    position: Mapped[int] = mapped_column(Integer, default=0)
    # The address its host's engine reports on it: the same as `address` on the overlay; a host
    # without the overlay lets its engine choose (None: not reported yet).
    engine_address: Mapped[str | None] = mapped_column(String(45))
    # Never loaded (lazy="raise"): they tell the unit of work to insert the cell first.
    cell: Mapped[Cell] = relationship(lazy="raise")


class CellEvent(Base):
    __tablename__ = "cell_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cell_id: Mapped[str] = mapped_column(ForeignKey("cells.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")


class Volume(Base):
    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    size_gb: Mapped[int] = mapped_column(Integer)
    host_id: Mapped[str | None] = mapped_column(ForeignKey("hosts.id"))
    state: Mapped[str] = mapped_column(String(16), default="READY")  # READY | DELETING
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    docker_name: Mapped[str | None] = mapped_column(String(255))  # as `Network.docker_name`


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    entity_kind: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(40), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    # The project of the task's entity, kept after the entity is gone (`task ls`).
    project_id: Mapped[str | None] = mapped_column(String(40), index=True)
    steps: Mapped[list[Any]] = mapped_column(default=list)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyRecord(Base):
    """The answer to a POST, stored in the same transaction as the change it made."""

    __tablename__ = "idempotency"
    principal: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Credential(Base):
    """A bearer credential (the bootstrap admin token until the identity service issues tokens)."""

    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(128), unique=True)
    subject: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    roles: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Leadership(Base):
    """The one row (id 1) saying which server replica runs the controllers, and its epoch
    (bumped at every takeover; `cellplane.state.leadership` fences controller writes with it)."""

    __tablename__ = "leadership"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    holder: Mapped[str | None] = mapped_column(String(255))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
