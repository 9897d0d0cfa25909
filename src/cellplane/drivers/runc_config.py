"""The OCI runtime configuration (`config.json`) of a runc cell: pure functions, unit-tested.

`bundle_config` turns a `ContainerSpec`, the image's own configuration (Docker's `Config`:
Entrypoint, Cmd, Env, WorkingDir, User) and the paths the driver prepared (the overlay root, the
files it wrote, the volumes' directories, the network namespace) into the OCI runtime spec 1.0
document runc reads. The hardening is the podman driver's: the engine's default capabilities
minus `DROPPED_CAPABILITIES`, no new privileges, the usual masked and read-only /proc paths, no
device but the defaults, a pids limit. The memory limit is set at create; the CPU quota is not
(`Driver.apply_limits` sets it once the container runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellplane.drivers.base import DROPPED_CAPABILITIES, ContainerSpec

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_PATH",
    "BundlePaths",
    "UserIds",
    "bundle_config",
    "bundle_volumes",
    "cell_capabilities",
    "process_args",
    "process_env",
    "resolve_user",
]

#: The capability set the podman driver's cells start from: podman's defaults (containers.conf)
#: and NET_RAW, which its cells have (`ping` on a project network; see DROPPED_CAPABILITIES).
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MIB = 1024 * 1024
# The engine's limits (containers.conf `default_ulimits`): under this machine's hard limits.
_RLIMITS = (("RLIMIT_NOFILE", 1024), ("RLIMIT_NPROC", 4096))
_MASKED = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
)
_READONLY = (
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


@dataclass(frozen=True)
class UserIds:
    """The numeric identity the cell's process runs as."""

    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()


@dataclass(frozen=True)
class BundlePaths:
    """What the driver prepared on the host for one cell.

    `rootfs`: the mounted overlay; `hosts`/`resolv_conf`/`hostname_file`: files it wrote;
    `volumes`: (host directory, target, read-only) per `MountSpec`; `netns`: the network
    namespace to join (None: a new one with loopback only); `cgroups_path`: relative to the
    agent's own cgroup (runc's cgroupfs manager), or absolute.
    """

    rootfs: str
    hosts: str
    resolv_conf: str
    hostname_file: str
    cgroups_path: str
    volumes: list[tuple[str, str, bool]] = field(default_factory=list)
    netns: str | None = None


def _id_or_none(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def resolve_user(user: str, passwd: str, group: str) -> UserIds:
    """`user` (`name|uid[:group|gid]`, "" for root) as numeric ids, looked up in the image's
    /etc/passwd and /etc/group texts. ValueError naming the user when it is unknown."""
    if not user:
        return UserIds()
    name, _, group_name = user.partition(":")
    users = {}
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            users[parts[0]] = (int(parts[2]), int(parts[3]))
    groups: dict[str, tuple[int, list[str]]] = {}
    for line in group.splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit():
            members = parts[3].split(",") if len(parts) > 3 and parts[3] else []
            groups[parts[0]] = (int(parts[2]), members)
    uid = _id_or_none(name)
    login: str | None = None
    if uid is None:
        if name not in users:
            raise ValueError(f"user {name!r} is not in the image's /etc/passwd")
        uid, gid = users[name]
        login = name
    else:
        by_uid = {u: (n, g) for n, (u, g) in users.items()}
        login, gid = by_uid.get(uid, (None, 0))
    if group_name:
        found = _id_or_none(group_name)
        if found is None:
            if group_name not in groups:
                raise ValueError(f"group {group_name!r} is not in the image's /etc/group")
            found = groups[group_name][0]
        gid = found
    extra = (
        tuple(sorted({g for g, members in groups.values() if login in members} - {gid}))
        if login and not group_name
        else ()
    )
    return UserIds(uid, gid, extra)


def process_args(spec: ContainerSpec, image: dict[str, Any]) -> list[str]:
    """The command line: the entrypoint (the spec's, else the image's) then the command (the
    spec's, else the image's Cmd, unless the spec gave its own entrypoint). ValueError if empty."""
    entrypoint = (
        list(spec.entrypoint)
        if spec.entrypoint is not None
        else list(image.get("Entrypoint") or [])
    )
    if spec.command is not None:
        command = list(spec.command)
    elif spec.entrypoint is not None:
        command = []
    else:
        command = list(image.get("Cmd") or [])
    args = entrypoint + command
    if not args:
        raise ValueError(
            f"container {spec.name}: no command (neither the spec nor the image has one)"
        )
    return args


def process_env(spec: ContainerSpec, image: dict[str, Any], hostname: str) -> list[str]:
    """The image's environment, overridden by the spec's; PATH and HOSTNAME always set."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH}
    for item in image.get("Env") or []:
        key, sep, value = str(item).partition("=")
        if sep and key:
            env[key] = value
    env["HOSTNAME"] = hostname
    env.update(spec.env)
    return [f"{k}={v}" for k, v in env.items()]


def cell_capabilities() -> list[str]:
    """The capability names every cell's process gets (bounding set), in OCI form."""
    return [f"CAP_{c}" for c in DEFAULT_CAPABILITIES if c not in DROPPED_CAPABILITIES]


def bundle_volumes(
    spec: ContainerSpec, volume_path: Callable[[str], Path]
) -> list[tuple[str, str, bool]]:
    """`BundlePaths.volumes` for the spec's mounts: a named volume's directory (`volume_path`,
    the engine's), or the host path itself (the agent checked it: it exists, links resolved)."""
    return [(m.host_path or str(volume_path(m.volume)), m.target, m.read_only) for m in spec.mounts]


def _mounts(paths: BundlePaths, read_only: bool) -> list[dict[str, Any]]:
    nodev = ["nosuid", "noexec", "nodev"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": nodev},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*nodev, "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": nodev},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": [*nodev, "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*nodev, "relatime", "ro"],
        },
    ]
    if read_only:  # a read-only root keeps writable scratch directories, as podman's does
        for target in ("/tmp", "/var/tmp", "/run"):
            mounts.append(
                {
                    "destination": target,
                    "type": "tmpfs",
                    "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777"],
                }
            )
    for source, target in (
        (paths.hosts, "/etc/hosts"),
        (paths.resolv_conf, "/etc/resolv.conf"),
        (paths.hostname_file, "/etc/hostname"),
    ):
        mounts.append(
            {"destination": target, "type": "bind", "source": source, "options": ["rbind", "rw"]}
        )
    for source, target, read_only in paths.volumes:
        mounts.append(
            {
                "destination": target,
                "type": "bind",
                "source": source,
                "options": ["rbind", "ro" if read_only else "rw"],
            }
        )
    return mounts


def bundle_config(
    spec: ContainerSpec,
    image: dict[str, Any],
    user: UserIds,
    paths: BundlePaths,
) -> dict[str, Any]:
    """The `config.json` of the cell (OCI runtime spec 1.0). ValueError if the spec cannot run
    here (no command, a TTY or an open stdin: this driver runs cells detached, without one)."""
    if spec.tty or spec.stdin:
        raise ValueError(
            f"container {spec.name}: a TTY or an open stdin is not supported by the runc driver"
        )
    if spec.runtime is not None:
        raise ValueError(
            f"container {spec.name}: the runc driver runs only runc ({spec.runtime} asked for)"
        )
    docker_only = {
        "--cap-drop": spec.cap_drop,
        "--add-host": spec.extra_hosts,
        "--tmpfs": spec.tmpfs,
        "--stop-signal": spec.stop_signal,
        "--init": spec.init,
        "--group-add": spec.group_add,
        "--ulimit": spec.ulimits,
    }
    if asked := [option for option, value in docker_only.items() if value]:
        raise ValueError(
            f"container {spec.name}: {', '.join(asked)} not supported by the runc driver yet"
        )
    hostname = spec.hostname or spec.name[:63]
    caps = cell_capabilities()
    root_caps = caps if user.uid == 0 else []
    workdir = spec.workdir or str(image.get("WorkingDir") or "") or "/"
    if not workdir.startswith("/"):
        raise ValueError(f"container {spec.name}: working directory must be absolute: {workdir!r}")
    process: dict[str, Any] = {
        "terminal": False,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": process_args(spec, image),
        "env": process_env(spec, image, hostname),
        "cwd": workdir,
        "capabilities": {
            "bounding": caps,
            "effective": root_caps,
            "permitted": root_caps,
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [{"type": t, "hard": n, "soft": n} for t, n in _RLIMITS],
        "noNewPrivileges": True,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "network", "path": paths.netns} if paths.netns else {"type": "network"},
    ]
    resources: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}],
    }
    if spec.pids_limit:
        resources["pids"] = {"limit": spec.pids_limit}
    if spec.memory_mb:
        # Swap as the engine allows it: as much again as the memory.
        resources["memory"] = {
            "limit": spec.memory_mb * _MIB,
            "swap": 2 * spec.memory_mb * _MIB,
        }
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": paths.rootfs, "readonly": spec.read_only},
        "hostname": hostname,
        "mounts": _mounts(paths, spec.read_only),
        "annotations": {f"cellplane.label.{k}": v for k, v in spec.labels.items()},
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": paths.cgroups_path,
            "resources": resources,
            # ICMP echo sockets for every group, as the engine sets them: `ping` without NET_RAW.
            "sysctl": {"net.ipv4.ping_group_range": "0 0"},
            "maskedPaths": list(_MASKED),
            "readonlyPaths": list(_READONLY),
        },
    }
