"""The engine-neutral driver contract: value types and the `Driver` Protocol.

The host agent (`cellplane.agent`) is the only production caller: it turns the cells
assigned to its host into `ContainerSpec`s and drives an engine through `Driver`,
reading back `ContainerInfo`. Implementations: `podman.PodmanDriver` (real engine) and
`fake.FakeDriver` (in-memory, for the agent's unit tests). Nothing here knows about a
particular engine; engine-specific paths stay inside the implementations.

Every method raises only `cellplane.drivers.errors` exceptions.
"""

from __future__ import annotations

# `Driver.list` shadows the builtin inside the Protocol body, hence builtins.list there.
import builtins
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "DEFAULT_PIDS_LIMIT",
    "DEFAULT_ULIMITS",
    "DROPPED_CAPABILITIES",
    "PROTOCOLS",
    "ContainerInfo",
    "ContainerSpec",
    "Driver",
    "ExecResult",
    "ExecSession",
    "MountSpec",
    "NetworkSpec",
    "PortSpec",
    "Signals",
]

PROTOCOLS = frozenset({"tcp", "udp", "sctp"})

#: The processes (and threads) a cell may have when it names no limit: bounds a fork bomb to
#: its own cell while leaving room for thread-heavy services (a JVM runs hundreds of threads).
DEFAULT_PIDS_LIMIT = 4096

#: Capabilities dropped from the engine's default set for every cell (docs/operations.md,
#: "Hardening defaults"). Podman's default set is CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
#: NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID and SYS_CHROOT; what remains covers what
#: images do at start (change file owners, drop to a service user, bind a port under 1024,
#: signal their children). Dropped: setting file capabilities (SETFCAP), changing capability
#: sets (SETPCAP), chroot (SYS_CHROOT); and, should an engine's defaults grant them, device nodes
#: and audit writes (MKNOD, AUDIT_WRITE). Raw sockets (NET_RAW) stay where the engine grants them,
#: as Docker's default set does: `ping` (busybox's needs a raw socket) is how users check a
#: project network, and a cell's raw packets reach only its own project's network.
DROPPED_CAPABILITIES: tuple[str, ...] = (
    "SETFCAP",
    "SETPCAP",
    "SYS_CHROOT",
    "MKNOD",
    "AUDIT_WRITE",
)


#: Every cell's resource limits unless it asks for others (name, soft, hard): under this
#: machine's hard limits (the engines' own defaults exceed them, and every start then fails).
DEFAULT_ULIMITS: tuple[tuple[str, int, int], ...] = (("nofile", 1024, 1024), ("nproc", 4096, 4096))


@dataclass(frozen=True)
class PortSpec:
    """A container port published on the host; `host_port=None` lets the engine pick."""

    container_port: int
    host_port: int | None = None
    protocol: str = "tcp"

    def __post_init__(self) -> None:
        if not 0 < self.container_port < 65536:
            raise ValueError(f"container_port out of range: {self.container_port}")
        if self.host_port is not None and not 0 < self.host_port < 65536:
            raise ValueError(f"host_port out of range: {self.host_port}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}: {self.protocol!r}")


@dataclass(frozen=True)
class MountSpec:
    """An engine volume (by name) or, with `host_path` (`volume` then ""), a directory of the
    host bind-mounted at `target` inside the container. The agent has checked the host path
    (`cellplane.host_paths.resolve_under`): it exists and is the real path, links resolved."""

    volume: str
    target: str
    read_only: bool = False
    host_path: str | None = None

    def __post_init__(self) -> None:
        if not self.target.startswith("/"):
            raise ValueError(f"mount target must be absolute: {self.target!r}")
        if bool(self.volume) == (self.host_path is not None):
            raise ValueError("a mount has exactly one of a volume name and a host path")
        if self.host_path is not None and not self.host_path.startswith("/"):
            raise ValueError(f"host path must be absolute: {self.host_path!r}")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container.

    Exactly one of `image` (an image reference in local storage) and `rootfs` (a
    directory used as the root filesystem through an overlay; "/" means the host's own
    root, zero copy) is set. `cpu` is in cores and `memory_mb` in MiB; 0 means no limit.
    `create` applies the memory limit; the CPU limit is applied by `Driver.apply_limits` once
    the container runs (an engine may give a limit that does not slow the start at create, and
    skip the first `apply_limits` of the same limits: podman, `quota_at_create`).
    `command=None` runs the image's default command (required with `rootfs`).
    """

    name: str
    image: str | None = None
    rootfs: str | None = None
    command: list[str] | None = None
    # None: the image's own entrypoint, working directory and user.
    entrypoint: list[str] | None = None
    workdir: str | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    network: str | None = None
    aliases: list[str] = field(default_factory=list)
    address: str | None = None  # on `network`: the control plane's (None: the engine's IPAM)
    # Further networks the container joins (name -> the control plane's address or None), with
    # the same aliases as on `network`.
    extra_networks: dict[str, str | None] = field(default_factory=dict)
    cpu: float = 0.0
    memory_mb: int = 0
    ports: list[PortSpec] = field(default_factory=list)
    mounts: list[MountSpec] = field(default_factory=list)
    # Hardening (every cell: DROPPED_CAPABILITIES, no new privileges, never privileged, no host
    # namespaces): an opt-in read-only root, and the pids limit (0: the engine's own).
    read_only: bool = False
    pids_limit: int = DEFAULT_PIDS_LIMIT
    # The engine's OCI runtime by name (None: its default, runc). A sandbox's (runsc) CPU limit
    # also comes from `apply_limits` after start, written to its cgroup (runsc has no update).
    runtime: str | None = None
    # The main process's standard input kept open (to be attached: `Driver.attach_open`),
    # closed after the first attached client closed it (`stdin_once`); a TTY for it.
    stdin: bool = False
    stdin_once: bool = False
    tty: bool = False
    # The TTY's size (cols, rows) from the process's start (None: the engine's, 0x0 until the
    # first resize).
    tty_size: tuple[int, int] | None = None
    # Docker's `--cap-drop` (CAP_ names or ALL, beyond DROPPED_CAPABILITIES), `--add-host`
    # ((name, address) lines of /etc/hosts), `--tmpfs` ((path, mount options)) and
    # `--stop-signal` (the signal a stop sends first; None: SIGTERM), `--init` (the engine's
    # init as PID 1), `--group-add` (supplementary groups, names or numbers) and `--ulimit`
    # ((name, soft, hard), -1 unlimited; the others stay at DEFAULT_ULIMITS).
    cap_drop: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    tmpfs: tuple[tuple[str, str], ...] = ()
    stop_signal: str | None = None
    init: bool = False
    group_add: tuple[str, ...] = ()
    ulimits: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("container name must not be empty")
        if (self.image is None) == (self.rootfs is None):
            raise ValueError("exactly one of image and rootfs must be set")
        if self.rootfs is not None and not self.command:
            raise ValueError("a rootfs container needs an explicit command")
        if self.cpu < 0 or self.memory_mb < 0:
            raise ValueError("cpu and memory_mb must not be negative")
        if self.pids_limit < 0:
            raise ValueError("pids_limit must not be negative")
        if self.tty_size is not None and (not self.tty or min(self.tty_size) < 1):
            raise ValueError("tty_size needs a TTY and two sizes of at least 1")
        if (self.aliases or self.address or self.extra_networks) and self.network is None:
            raise ValueError("aliases, an address and further networks need a network")
        if self.network in self.extra_networks:
            raise ValueError(f"network {self.network} is given twice")


@dataclass(frozen=True)
class NetworkSpec:
    """A network as the engine must realise it (a project's `Network`, from the assignment).

    `name` is the engine-side name; `subnet` (CIDR) is the control plane's allocation, None to
    let the engine pick one from its pool, of `prefix_length` bits (None: the engine's usual
    size, a /24); `driver` is the engine driver (`bridge` now; the cross-host overlay plugs in
    here). Networks are isolated from each other and resolve their containers by name;
    `internal` ones have no route out.
    """

    name: str
    driver: str = "bridge"
    subnet: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    internal: bool = False
    prefix_length: int | None = None
    # The overlay: an existing bridge to put the network on (the agent made it, with a VXLAN
    # device in it), and the MTU of the network's interfaces (the underlay's less VXLAN's).
    interface: str | None = None
    mtu: int | None = None

    def __post_init__(self) -> None:
        if self.subnet is not None and self.prefix_length is not None:
            raise ValueError("give a subnet or a prefix_length, not both")
        if self.prefix_length is not None and not 8 <= self.prefix_length <= 29:
            raise ValueError(f"prefix_length must be 8 to 29: {self.prefix_length}")


@dataclass(frozen=True)
class ContainerInfo:
    """What the engine reports about one container.

    `started_at`/`finished_at` are the engine's RFC 3339 strings, None when unknown
    (never started, or not reported by a listing). `address` is the IP on the first
    network, None when it has none (e.g. not running). `ports` are the actual host
    bindings, with engine-picked host ports filled in once the container runs.
    """

    id: str
    name: str
    labels: dict[str, str]
    state: str
    running: bool
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    address: str | None = None
    image: str | None = None
    ports: list[PortSpec] = field(default_factory=list)
    # The IPv4 address on each of its networks, by the engine's network name (empty: unknown).
    addresses: dict[str, str] = field(default_factory=dict)
    # Its main process on this host while it runs (its namespaces are /proc/<pid>/ns/*), None
    # when it does not run or the engine did not say (a listing).
    pid: int | None = None


@dataclass(frozen=True)
class ExecResult:
    """Exit status and combined stdout+stderr of a command run inside a container."""

    exit_code: int
    output: bytes


class ExecSession(Protocol):
    """A command running inside a container with its streams attached (interactive exec).

    One reader calls `read` until it returns None; writers may call `write`, `close_stdin` and
    `resize` from another thread meanwhile. Then `exit_code` and `failure` say how it ended.
    """

    def read(self) -> tuple[int, bytes] | None:
        """The next output as (1 stdout | 2 stderr, bytes); with a TTY all is stdout. None once
        the command's streams are closed."""

    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin (opened with stdin=True)."""

    def close_stdin(self) -> None:
        """End the command's stdin (it reads EOF); output keeps coming."""

    def resize(self, cols: int, rows: int) -> None:
        """Set the TTY's window size."""

    def exit_code(self, timeout: float = 5.0) -> int | None:
        """The command's exit code, after `read` returned None."""

    @property
    def failure(self) -> str | None:
        """Why the command could not be started at all (not found...), after `read` ended."""

    def close(self) -> None:
        """Drop the streams (the command may go on running)."""


@runtime_checkable
class Signals(Protocol):
    """An engine that sends a running container's main process any signal (`docker kill
    --signal`); not every driver can (the agent answers 501 for one that cannot)."""

    def signal(self, container_id: str, number: int) -> None:
        """Send signal `number`; ContainerNotFound, or PermanentDriverError when not running."""


@runtime_checkable
class PreparesStart(Protocol):
    """An engine that does the part of a start that runs nothing of the container ahead of the
    start (podman's `init`: the runtime's container with its namespaces and addresses, its
    process held before the command runs), so that a start asked for later is quick. A
    container made to be started later (`docker create`) is prepared while the start is on its
    way; the command still runs only when the start comes."""

    def prepare_start(self, container_id: str) -> None:
        """Prepare the container's start; a container prepared already is left as it is.
        DriverError when the engine cannot (its start then does the whole work)."""


@runtime_checkable
class Driver(Protocol):
    """A container engine as the host agent sees it.

    Ensure/remove of networks and volumes are idempotent (removing one that is gone is
    not an error); container calls on a missing container raise `ContainerNotFound`.
    Implementations must be safe to call from several threads at once.
    """

    def ping(self) -> None:
        """Return if the engine answers; raise TemporaryDriverError if not."""

    def ensure_network(self, spec: NetworkSpec) -> None:
        """Create the network (DNS on, isolated from every other network) if absent.

        A network of that name that exists already is kept as it is (adopted), unless its subnet
        is not the one asked for (`subnet`, or a `prefix_length` of another size) and no
        container uses it: then it is made again as asked.
        """

    def remove_network(self, name: str) -> None:
        """Remove a network; no error if it does not exist."""

    def pin_network_bridge(self, name: str) -> None:
        """Keep the MAC address of the network's bridge fixed from now on (`bridge_pin`), after
        a container on it started; nothing if the driver's bridges never change theirs."""

    def list_networks(self, labels: dict[str, str]) -> builtins.list[str]:
        """Names of the networks carrying all of `labels`."""

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        """Create a named volume if absent."""

    def remove_volume(self, name: str) -> None:
        """Remove a volume; VolumeInUse if mounted; no error if it does not exist."""

    def list_volumes(self, labels: dict[str, str]) -> builtins.list[str]:
        """Names of the volumes carrying all of `labels`."""

    def volume_path(self, name: str) -> Path:
        """The directory holding the volume's data on this host (the agent copies volumes
        between hosts through it); PermanentDriverError if there is no such volume."""

    def has_image(self, ref: str) -> bool:
        """Whether `ref` resolves to an image in local storage."""

    def load_image(self, path: Path) -> builtins.list[str]:
        """Load a docker-archive or OCI-archive tarball; return the loaded names/ids."""

    def remove_image(self, ref: str) -> None:
        """Remove an image; ImageNotFound if absent."""

    def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; return its id. NameConflict if the name exists.

        The memory limit is set here; the CPU limit is not: a CFS quota on a starting container
        makes the runtime's own set-up run inside it (`runc init` takes 1.2-1.5 s under a 0.01
        CPU quota against ~50 ms without). The caller sets it with `apply_limits` after `start`.
        """

    def start(self, container_id: str) -> None:
        """Start a created or stopped container (without a CPU quota: see `apply_limits`).

        AddressesExhausted if its network has no free address.
        """

    def apply_limits(self, container_id: str, cpu: float, memory_mb: int) -> None:
        """Set a running container's CPU limit (cores) and memory limit (MiB) now; 0: none.

        The limits hold until the container stops: call it after every start.
        """

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; no error if already stopped."""

    def kill(self, container_id: str) -> None:
        """SIGKILL now; no error if not running."""

    def remove(self, container_id: str, force: bool = True) -> None:
        """Remove a container (killing it first if `force`)."""

    def inspect(self, id_or_name: str) -> ContainerInfo:
        """The current state of one container."""

    def list(self, labels: dict[str, str]) -> builtins.list[ContainerInfo]:
        """All containers (any state) carrying all of `labels`."""

    def logs(
        self, container_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        """Stdout and stderr as they come; with `follow`, until the container stops."""

    def docker_logs(
        self,
        container_id: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
        since: int = 0,
        stdout: bool = True,
        stderr: bool = True,
    ) -> Iterator[bytes]:
        """The logs as the Docker Engine API streams them: each piece behind an 8-byte header
        (stream 1 stdout or 2 stderr, then its length, big-endian); with `timestamps`, each
        line starts with its RFC 3339 time. `since`: Unix seconds (0: from the start)."""

    def exec(self, container_id: str, command: builtins.list[str]) -> ExecResult:
        """Run `command` inside a running container and wait for it."""

    def exec_open(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        size: tuple[int, int] | None = None,
        user: str | None = None,
        env: builtins.list[str] | None = None,
        workdir: str | None = None,
    ) -> ExecSession:
        """Start `command` inside a running container with its streams attached; `size` is the
        TTY's initial (cols, rows)."""

    def attach_open(
        self, container_id: str, *, stdin: bool = False, logs: bool = False
    ) -> ExecSession:
        """Attach to the container's main process (Docker's `attach`): its output from now on
        (with `logs`, from its start), and its standard input with `stdin` (the container must
        have been created with `ContainerSpec.stdin`). Closing the session detaches; the exit
        code is the container's once it has ended (None while it runs); resizing needs a TTY."""
