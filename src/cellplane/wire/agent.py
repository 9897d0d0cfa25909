"""The server<->agent contract, typed and versioned (``api_version``: ``agent/v1``).

Used by the server (`services.hosts` builds the answers, `api.routes_agent` and `services.hosts`
validate what agents send) and by the agent (`agent.server_client` sends and reads these,
`agent.runner` acts on them). docs/agent-protocol.md describes the exchange.

Versioning rule: within one version, fields may only be *added*, optional, with a default that
means what the older peer assumed; unknown fields are ignored by both sides. Renaming or removing
a field, changing its type or its meaning makes a new version (``agent/v2``), and a peer speaking
another version is refused with a 4xx naming ``api_version`` (never a KeyError or a 500).

Presence matters in status reports: a cell report that carries ``message: null`` clears the
cell's message, one without ``message`` keeps it; the server reads ``model_fields_set``, the
agent sends with ``exclude_unset``.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

__all__ = [
    "API_VERSION",
    "VOLUME_SHA_HEADER",
    "Assignments",
    "CellAssignment",
    "CellReport",
    "EngineHealthReport",
    "EngineItem",
    "FenceReport",
    "HealthCheck",
    "HealthProbe",
    "HealthReport",
    "Heartbeat",
    "HostCapacity",
    "ImageRef",
    "M",
    "MountAssignment",
    "NetworkDescription",
    "Overlay",
    "OverlayNetwork",
    "PeerCell",
    "PortAssignment",
    "ProtocolError",
    "RegisterAnswer",
    "RegisterRequest",
    "ReportItem",
    "RestartPolicy",
    "StatusReport",
    "VolumeAssignment",
    "VolumeRemoved",
    "parse",
    "problems",
    "report_item",
]

API_VERSION: Final = "agent/v1"
# The agent endpoint's volume archive (``/volumes/{name}/archive``): its sha256, hex.
VOLUME_SHA_HEADER: Final = "X-Cellplane-SHA256"


class _Model(BaseModel):
    # Unknown fields are ignored: a newer peer of the same version may add optional ones.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Versioned(_Model):
    """A top-level message: says which version of the protocol it speaks."""

    api_version: str | None = None

    @field_validator("api_version")
    @classmethod
    def _same_version(cls, v: str | None) -> str | None:
        if v != API_VERSION:
            sent = (
                "no api_version (an agent older than the versioned protocol)"
                if v is None
                else repr(v)
            )
            raise ValueError(
                f"this server speaks {API_VERSION}, the peer sent {sent}: "
                "run an agent and a server of the same release"
            )
        return v


# --- registration -------------------------------------------------------------------------


class HostCapacity(_Model):
    cpu: float  # allocatable: cores x cpu_ratio
    memory_mb: int
    disk_gb: int
    cores: int | None = None  # the machine's cores, as counted by the agent
    cpu_ratio: float | None = None  # the CPU overcommit ratio the agent applied


class EngineHealthReport(_Model):
    """The host's container engine as its agent sees it."""

    state: str = "UP"  # UP | DOWN (read case-insensitively)
    message: str | None = None
    since: str | None = None  # ISO 8601
    restarts: int = 0


class RegisterRequest(_Versioned):
    join_token: str = ""
    name: str = ""
    address: str | None = None
    capacity: HostCapacity | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    zone: str | None = None
    agent_url: str | None = None
    agent_secret: str | None = None
    engine: EngineHealthReport | None = None
    csr: str | None = None  # PEM CSR, CN the host name: asks for a host certificate
    # The isolation classes the agent's engine can run (probed at start); None: an agent older
    # than isolation classes, which runs `standard` only. `isolation_detail` says how
    # ("sandbox: runsc 0.0~20221219.0, platform ptrace") or why not, for `host show`.
    isolation: list[str] | None = None
    isolation_detail: str | None = None

    @field_validator("csr", mode="before")
    @classmethod
    def _csr_text(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise ValueError("must be a PEM certificate signing request")
        return v


class RegisterAnswer(_Versioned):
    host_id: str
    host_token: str
    certificate: str | None = None
    certificate_chain: str | None = None


class Heartbeat(_Versioned):
    """The heartbeat body (the agent's liveness; engine health travels in status reports)."""


# --- assignments --------------------------------------------------------------------------


class NetworkDescription(_Model):
    """A project network as a host must realise it; ``name`` is the engine-side name."""

    name: str
    subnet: str | None = None  # the control plane's allocation (CIDR)
    driver: str = "bridge"
    # Added for the overlay (absent from older servers: the agent keeps the host-local bridge).
    vni: int | None = None  # the network's VXLAN id, allocated by the control plane
    address: str | None = None  # this cell's address on the network (control plane's IPAM)


class ImageRef(_Model):
    id: str
    kind: str  # host | archive | oci | rootfs
    engine_ref: str | None = None
    sha256: str | None = None


class PortAssignment(_Model):
    container_port: int
    host_port: int | None = None
    protocol: str = "tcp"


class MountAssignment(_Model):
    """A named volume (`volume_id`, `engine_name`) or, with `host_path`, a directory of the
    host (both names then empty) mounted at `path`. `host_root`: the directory of the operator's
    list (`CELLPLANE_ALLOWED_HOST_PATHS`) that admitted `host_path`; the agent mounts the path
    only if it exists and its real path lies under the real `host_root` (None: not allowed)."""

    path: str
    read_only: bool = False
    volume_id: str = ""
    engine_name: str = ""
    host_path: str | None = None
    host_root: str | None = None


class RestartPolicy(_Model):
    policy: str = "never"  # never | on-failure | always
    max_retries: int | None = None


class HealthCheck(_Model):
    """A command the agent runs in the cell's running container every `interval_s` (Docker's
    HEALTHCHECK): exit 0 is healthy; `retries` failures in a row (not counted during the first
    `start_period_s`) make it unhealthy. `shell`: the one string of `command` runs with
    `/bin/sh -c`."""

    command: list[str]
    shell: bool = False
    interval_s: float = 30.0
    timeout_s: float = 30.0
    retries: int = 3
    start_period_s: float = 0.0


class CellAssignment(_Model):
    """The full desired state of one cell on the host."""

    cell_id: str
    name: str
    project_id: str
    network: NetworkDescription
    image: ImageRef
    cpu: float
    memory_mb: int
    command: list[str] | None = None
    # Set through the Docker-compatible endpoint; None keeps the image's own (hostname: the name).
    entrypoint: list[str] | None = None
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    # Hardening opt-ins; a pids limit of None: the agent's default (drivers.base).
    read_only: bool = False
    pids_limit: int | None = None
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    ports: list[PortAssignment] = Field(default_factory=list)
    mounts: list[MountAssignment] = Field(default_factory=list)
    restart: RestartPolicy = Field(default_factory=RestartPolicy)
    isolation: str = "standard"  # standard (runc) | sandbox (gVisor's runsc)
    stop_timeout: float | None = None
    desired_state: str = "RUNNING"  # RUNNING | CREATED (made, not started) | STOPPED | DELETED
    restarts: int = 0  # the server's count; the agent never goes below it
    restart_requested_at: str | None = None  # ISO 8601
    ended_at: str | None = None  # ISO 8601
    # Bumped each time the cell is assigned to a host anew (moved, failed over): a container of
    # the cell labelled with an older generation is stale, and the agent replaces it.
    generation: int = 1
    # Added for cells on several networks: the further ones, after `network` (absent from older
    # servers: the cell is on `network` only; an older agent ignores them and joins that one).
    extra_networks: list[NetworkDescription] = Field(default_factory=list)
    # Added with the guard against containers without their data: the volumes (names) the cell
    # mounts that are not on this host (yet). The agent creates no container for the cell while
    # any is named (absent from older servers: none pending; an older agent ignores it).
    pending_volumes: list[str] = Field(default_factory=list)
    # Added for healthchecks: the check the agent runs while the container runs (None: none).
    healthcheck: HealthCheck | None = None

    @field_validator("network", mode="before")
    @classmethod
    def _network(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v  # a bare name: the default network


class VolumeAssignment(_Model):
    volume_id: str
    engine_name: str
    state: str  # READY | DELETING


class Assignments(_Versioned):
    """What the host should run: every changed cell (all of them when ``full``)."""

    api_version: str | None = API_VERSION
    revision: int
    full: bool = False
    cells: list[CellAssignment] = Field(default_factory=list)
    volumes: list[VolumeAssignment] = Field(default_factory=list)


# --- the overlay: project networks across hosts -----------------------------------------


class PeerCell(_Model):
    """A cell of the network on another host: its name resolves to its address on every host."""

    cell_id: str
    name: str
    address: str
    # Its further names on the network (`wire.exec.network_names`: a Docker container's short id
    # and `--network-alias` values, Compose's service name), resolved on every host as the name.
    aliases: list[str] = Field(default_factory=list)


class OverlayNetwork(_Model):
    """One network this host's cells use, with what lives on the other hosts."""

    name: str  # engine-side name
    vni: int
    subnet: str
    peers: list[str] = Field(default_factory=list)  # underlay addresses of the other hosts
    cells: list[PeerCell] = Field(default_factory=list)  # the cells on those hosts


class Overlay(_Versioned):
    """``GET /v1/agent/hosts/{id}/overlay``: every overlay network the host takes part in."""

    api_version: str | None = API_VERSION
    networks: list[OverlayNetwork] = Field(default_factory=list)


# --- status reports -----------------------------------------------------------------------


class CellEventReport(_Model):
    at: str | None = None  # ISO 8601
    type: str = "event"
    message: str = ""


class HealthProbe(_Model):
    """One run of a cell's health check: when (ISO 8601), its exit code (-1: it timed out or
    could not run) and the start of its output."""

    start: str
    end: str
    exit_code: int
    output: str = ""


class HealthReport(_Model):
    """A cell's health: starting | healthy | unhealthy, the failed checks in a row, and the
    newest checks (at most 5), as Docker's `State.Health`."""

    status: str
    failing_streak: int = 0
    log: list[HealthProbe] = Field(default_factory=list)


class CellReport(_Model):
    """The observed state of one cell; absent fields mean "unchanged" (see the module doc)."""

    cell_id: str
    state: str | None = None
    message: str | None = None
    container_id: str | None = None
    address: str | None = None
    exit_code: int | None = None
    restarts: int | None = None
    ended: bool = False
    removed: bool = False
    events: list[CellEventReport] = Field(default_factory=list)
    generation: int | None = None  # the assignment's generation the report is about
    # Added for cells on several networks: the address on each, by the engine's network name.
    addresses: dict[str, str] | None = None
    # Added for healthchecks: sent when the health of its container's checks changes.
    health: HealthReport | None = None
    # Added for `-p PORT`: the host ports the engine picked, sent while the container runs.
    ports: list[PortAssignment] | None = Field(default=None, max_length=64)


class FenceReport(_Model):
    """The agent acted on the full view of revision `fenced`: no container of a cell that is
    not assigned to this host (or of an older generation) is left on it."""

    fenced: int


class VolumeRemoved(_Model):
    volume_removed: str


class EngineItem(_Model):
    engine: EngineHealthReport


def _item_kind(v: Any) -> str:
    if isinstance(v, dict):
        if "fenced" in v:
            return "fence"
        return "volume" if "volume_removed" in v else "engine" if "engine" in v else "cell"
    if isinstance(v, VolumeRemoved):
        return "volume"
    if isinstance(v, FenceReport):
        return "fence"
    return "engine" if isinstance(v, EngineItem) else "cell"


ReportItem = Annotated[
    Annotated[CellReport, Tag("cell")]
    | Annotated[VolumeRemoved, Tag("volume")]
    | Annotated[EngineItem, Tag("engine")]
    | Annotated[FenceReport, Tag("fence")],
    Discriminator(_item_kind),
]


class StatusReport(_Versioned):
    cells: list[ReportItem] = Field(default_factory=list)


# --- reading --------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)
_TAGS = frozenset({"cell", "volume", "engine", "fence"})


class ProtocolError(ValueError):
    """A message that is not valid ``agent/v1``: ``problems`` names each field and why."""

    def __init__(self, model: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(f"{model}: " + "; ".join(f"{f}: {m}" for f, m in problems))

    @property
    def version_mismatch(self) -> bool:
        return any(f == "api_version" for f, _ in self.problems)


def problems(e: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each error; the union's tags are left out of the paths."""
    out = []
    for err in e.errors():
        raw = list(err.get("loc", ()))
        # A report item's union tag follows its list index ("cells.0.engine.engine.restarts"):
        # left out there only, since "engine" is also a field name.
        loc = [
            str(p)
            for i, p in enumerate(raw)
            if not (p in _TAGS and i > 0 and isinstance(raw[i - 1], int))
        ]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append((".".join(loc) or "body", msg))
    return out


def parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or ProtocolError naming the fields that are wrong."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ProtocolError(model.__name__, problems(e)) from None


def report_item(data: Any) -> CellReport | VolumeRemoved | EngineItem | FenceReport:
    """One status report item (tests and in-process callers hand in dicts)."""
    if isinstance(data, CellReport | VolumeRemoved | EngineItem | FenceReport):
        return data
    kind = _item_kind(data)
    if kind == "fence":
        return parse(FenceReport, data)
    if kind == "volume":
        return parse(VolumeRemoved, data)
    if kind == "engine":
        return parse(EngineItem, data)
    return parse(CellReport, data)
