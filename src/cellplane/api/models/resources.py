"""Answers of the developer and operator API: problems, system, tasks, cells, volumes, hosts,
flavors, images, clusters and the catalog."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from cellplane.api.models.base import OpenView, Time, View

__all__ = [
    "CatalogDistro",
    "CatalogDistroList",
    "CatalogRole",
    "CatalogRoleList",
    "CatalogSpec",
    "CatalogSpecList",
    "Cell",
    "CellEvent",
    "CellList",
    "CellMount",
    "CellNetworkView",
    "CellPort",
    "CellRestart",
    "Cluster",
    "ClusterEvent",
    "ClusterList",
    "ClusterNode",
    "ClusterNodeGroup",
    "ClusterSpecDocument",
    "DockerEndpoint",
    "DockerEndpointList",
    "EngineState",
    "ExecResult",
    "Flavor",
    "FlavorList",
    "Health",
    "Host",
    "HostCapacity",
    "HostList",
    "HostUsage",
    "Image",
    "ImageList",
    "IsolationCell",
    "Network",
    "NetworkList",
    "Problem",
    "ProblemField",
    "Project",
    "ProjectList",
    "ProjectUpdated",
    "Ready",
    "Task",
    "TaskEntity",
    "TaskList",
    "TaskStep",
    "Volume",
    "VolumeList",
    "Whoami",
]


# --- problems ---------------------------------------------------------------------------------


class ProblemField(BaseModel):
    field: str = Field(description="The field's path in the request: `name`, `env.PATH`.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str = Field(description="https://cellplane.dev/problems/<slug>: validation, ...")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemField] | None = Field(
        default=None, description="With 422: every field that is wrong and why."
    )


# --- system -----------------------------------------------------------------------------------


class Health(View):
    status: str


class Ready(View):
    status: str = Field(description="`ready`, or `unavailable` (with 503 and a detail).")
    detail: str | None = None


class Leader(View):
    """Which server replica runs the controllers (several servers on one PostgreSQL)."""

    replica: str = Field(description="The replica that answered.")
    leading: bool = Field(description="Whether the replica that answered runs the controllers.")
    leader: str | None = Field(description="The replica that took the leadership last.")
    epoch: int = Field(description="Bumped at every takeover; controller writes are fenced by it.")
    since: Time | None = Field(description="When that replica took over.")
    database: str = Field(description="`postgresql` (elected) or `sqlite` (one server, leads).")


class Whoami(View):
    subject: str
    name: str | None
    tenant: str | None
    roles: list[str]
    projects: dict[str, list[str]] = Field(description="Project id -> the caller's roles there.")
    kind: str


class Project(View):
    id: str
    name: str
    tenant: str
    min_isolation: str | None = Field(
        description="The weakest isolation class its cells may use; null: any."
    )
    created_at: Time


class IsolationCell(View):
    id: str
    name: str
    project: str
    isolation: str


class ProjectUpdated(Project):
    cells_below_policy: list[IsolationCell] = Field(
        default_factory=list,
        description="Existing cells below the new minimum: reported, never changed.",
    )


class ProjectList(View):
    items: list[Project]
    next_cursor: str | None


# --- tasks ------------------------------------------------------------------------------------


class TaskEntity(View):
    kind: str | None
    id: str | None
    name: str | None = Field(
        None, description="The entity's name (null once it is gone); in task reads and lists."
    )


class TaskStep(View):
    name: str
    state: str
    started_at: Time | None
    finished_at: Time | None
    error: str | None
    message: str | None = None
    cell: str | None = Field(default=None, description="A drain's step: the cell it moves.")


class Task(View):
    id: str
    kind: str
    state: str = Field(description="QUEUED, RUNNING, COMPLETED, FAILED or CANCELLED.")
    entity: TaskEntity
    progress: int
    steps: list[TaskStep]
    error: str | None
    created_at: Time | None
    started_at: Time | None
    finished_at: Time | None


# --- cells and volumes --------------------------------------------------------------------------


class CellPort(View):
    """A published port. One without `host_port` also has `picked_port` (an integer) once its
    host's engine has picked a host port for it, as the agent last reported it while the cell
    ran; absent before."""

    container_port: int
    host_port: int | None
    protocol: str


class CellMount(View):
    """A named volume (`volume`) or a host directory (`host_path`) mounted at `path`."""

    volume: str | None = None
    host_path: str | None = None
    path: str
    read_only: bool


class CellRestart(View):
    policy: str
    max_retries: int | None


class CellHealthCheck(View):
    command: list[str]
    shell: bool = Field(description="`command` is one string run with `/bin/sh -c`.")
    interval_s: float
    timeout_s: float
    retries: int = Field(description="Failed checks in a row that make the cell unhealthy.")
    start_period_s: float = Field(description="Failures in this first while do not count.")


class CellHealthProbe(View):
    start: str
    end: str
    exit_code: int = Field(description="-1: the check timed out or could not run.")
    output: str


class CellHealth(View):
    status: str = Field(description="starting, healthy or unhealthy.")
    failing_streak: int
    log: list[CellHealthProbe] = Field(description="The newest checks, at most 5.")


class CellAffinity(View):
    selector: dict[str, str]
    anti: bool
    soft: bool


class CellEvent(View):
    at: Time | None
    type: str
    message: str | None


class CellNetworkView(View):
    name: str = Field(description="The network's name in the project (`default`: its own).")
    address: str | None = Field(description="The cell's address on it (the control plane's).")


class Cell(View):
    id: str
    name: str
    project: str
    tenant: str
    image: str
    flavor: str | None
    cpu: float
    memory_mb: int
    disk_gb: int
    command: list[str] | None
    entrypoint: list[str] | None = Field(description="Null: the image's own entrypoint.")
    workdir: str | None
    user: str | None
    hostname: str | None
    read_only: bool = Field(description="The root file system is read-only (an opt-in).")
    pids_limit: int | None = Field(description="Null: the default limit of the cell's host.")
    env: dict[str, str]
    labels: dict[str, str]
    ports: list[CellPort]
    volumes: list[CellMount]
    restart: CellRestart
    isolation: str = Field(description="`standard` (runc) or `sandbox` (gVisor's runsc).")
    stop_timeout: float | None
    healthcheck: CellHealthCheck | None = Field(default=None, description="Null: no check.")
    health: CellHealth | None = Field(
        default=None, description="Its check's outcome as its host last reported (null: none)."
    )
    placement: str = Field(description="spread (the default) or binpack.")
    affinity: list[CellAffinity]
    generation: int = Field(description="Bumped each time the cell is assigned to a host anew.")
    desired_state: str
    state: str
    message: str | None
    host: str | None
    host_name: str | None
    address: str | None
    networks: list[CellNetworkView] = Field(
        description="The networks the cell joins, its first one first, with its address on each."
    )
    exit_code: int | None
    restarts: int
    container_id: str | None
    task: str | None
    events: list[CellEvent]
    created_at: Time | None
    updated_at: Time | None


class DockerEndpoint(View):
    id: str
    project: str
    port: int
    docker_host: str = Field(description="The DOCKER_HOST value, e.g. tcp://host:2376.")
    created_by: str | None
    created_at: Time | None


class DockerEndpointList(View):
    items: list[DockerEndpoint]
    next_cursor: str | None


class TaskList(View):
    items: list[Task]
    next_cursor: str | None


class CellList(View):
    items: list[Cell]
    next_cursor: str | None


class ExecResult(View):
    exit_code: int
    output: str = Field(description="stdout and stderr, interleaved, decoded as UTF-8.")


class Volume(View):
    id: str
    name: str
    project: str
    size_gb: int
    host: str | None
    host_name: str | None
    state: str
    attached_to: list[str] = Field(description="Ids of the cells it is attached to.")
    attached_names: list[str] = Field(description="Their names, in the same order.")
    available: bool = Field(description="False while its host is DOWN.")
    unavailable_reason: str | None
    created_at: Time | None
    labels: dict[str, str] = Field(default_factory=dict)
    docker_name: str | None = Field(
        default=None, description="The name a Docker client gave it, when not a DNS label."
    )


class VolumeList(View):
    items: list[Volume]
    next_cursor: str | None


class Network(View):
    id: str
    project_id: str
    project: str
    name: str = Field(description='What cells join it by; "default" for the project\'s own.')
    engine_name: str = Field(description="The engine's network name on every host.")
    default: bool
    subnet: str
    driver: str
    vni: int | None = Field(description="Its VXLAN id across hosts.")
    cells: int = Field(description="Cells on it.")
    created_at: Time | None
    labels: dict[str, str] = Field(default_factory=dict)
    docker_name: str | None = Field(
        default=None, description="The name a Docker client gave it, when not a DNS label."
    )


class NetworkList(View):
    items: list[Network]
    next_cursor: str | None


# --- hosts, flavors, images --------------------------------------------------------------------


class HostCapacity(View):
    cpu: float = Field(description="Allocatable CPU: cores x cpu_ratio.")
    memory_mb: int
    disk_gb: int
    cores: int | None = Field(description="The host's CPU cores (null from an older agent).")
    cpu_ratio: float | None = Field(description="The CPU overcommit ratio (null when unknown).")


class HostUsage(View):
    cpu: float
    memory_mb: int
    disk_gb: int
    cells: int
    stopped_cells: int = Field(description="Stopped or exited cells here; they reserve nothing.")


class EngineState(View):
    state: str = Field(description="UP or DOWN.")
    since: Time | None
    message: str | None
    outages: int


class Host(View):
    id: str
    name: str
    address: str
    state: str
    maintenance: bool
    labels: dict[str, str]
    zone: str | None
    capacity: HostCapacity
    usage: HostUsage
    last_heartbeat: Time | None
    created_at: Time | None
    state_reason: str | None
    engine: EngineState
    revoked_at: Time | None
    isolation: list[str] = Field(
        description="The isolation classes its engine can run (probed by its agent at start)."
    )
    isolation_detail: str | None = Field(description="How it runs them, or why it does not.")


class JoinToken(View):
    """A join token (`cellplane host token create`); the token itself is shown once."""

    id: str
    state: str  # ACTIVE, EXPIRED or USED
    created_by: str
    created_at: Time | None
    expires_at: Time | None
    uses_left: int | None
    used: int


class JoinTokenCreated(JoinToken):
    token: str


class JoinTokenList(View):
    items: list[JoinToken]
    next_cursor: str | None


class HostList(View):
    items: list[Host]
    next_cursor: str | None


class Flavor(View):
    name: str
    cpu: float
    memory_mb: int
    disk_gb: int


class FlavorList(View):
    items: list[Flavor]
    next_cursor: str | None


class Image(View):
    id: str
    name: str
    kind: str
    size_bytes: int
    sha256: str | None
    refs: list[str]
    created_at: Time | None


class ImageList(View):
    items: list[Image]
    next_cursor: str | None


# --- clusters and the catalog -------------------------------------------------------------------


class ClusterSpecDocument(OpenView):
    """A Serengeti cluster spec (see docs/clusters.md): `nodeGroups` and the spec's other keys."""

    nodeGroups: list[dict[str, Any]] = Field(default_factory=list)


class CatalogSpec(View):
    vendor: str
    version: str
    type: str
    appManager: str | None
    path: str
    spec: ClusterSpecDocument


class CatalogSpecList(View):
    items: list[CatalogSpec]
    next_cursor: str | None


class CatalogDistro(View):
    name: str
    vendor: str
    version: str
    roles: list[str]
    types: list[str]
    deployable: bool
    reasons: list[str] = Field(description="Why it cannot be deployed here (empty when it can).")


class CatalogDistroList(View):
    items: list[CatalogDistro]
    next_cursor: str | None


class CatalogRole(View):
    name: str
    description: str | None
    ports: dict[str, int]
    provides: list[str]
    waits_for: list[str]
    scale_in: bool
    data_dir: str | None
    requires: list[str]
    missing: list[str] = Field(description="Required binaries this server's host lacks.")


class CatalogRoleList(View):
    items: list[CatalogRole]
    next_cursor: str | None


class ClusterNodeGroup(View):
    name: str | None
    cellName: str
    roles: list[str] | None
    instanceNum: int | str | None


class ClusterNode(View):
    name: str
    group: str
    index: int
    roles: list[str]
    role_states: dict[str, str]
    state: str
    message: str | None
    log_tail: str | None
    cell: str | None
    cell_state: str | None
    address: str | None
    host: str | None
    host_name: str | None
    cell_name: str | None


class ClusterEvent(View):
    at: Time
    type: str = Field(description="node-lost, node-healed or heal-failed.")
    node: str | None
    message: str


class ClusterLeader(View):
    node: str
    endpoints: dict[str, str] = Field(description="Port name -> `node:port` of the leader.")


class Cluster(View):
    id: str
    name: str
    project: str
    distro: str | None
    type: str | None
    state: str
    message: str | None
    task: Task | None
    nodeGroups: list[ClusterNodeGroup]
    placement_notes: list[str]
    created_at: Time
    updated_at: Time
    nodes: list[ClusterNode]
    endpoints: dict[str, dict[str, list[str]]] = Field(
        description="Role -> port name -> `node:port` of every node with that role."
    )
    urls: dict[str, dict[str, list[str]]] = Field(
        description="Role -> port name -> `scheme://node:port`, for the ports a role names a "
        "scheme for (Spark: `spark://<master>:7077`, `http://<master>:8080`)."
    )
    events: list[ClusterEvent] = Field(description="The cluster's recent events, oldest first.")
    leaders: dict[str, ClusterLeader] = Field(
        default_factory=dict,
        description="Role -> the node leading it, for roles whose members elect a leader "
        "(Patroni's primary), as the executor last found it.",
    )


class ClusterList(View):
    items: list[Cluster]
    next_cursor: str | None
