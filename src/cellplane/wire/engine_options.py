"""Engine options a Docker endpoint's container carries as reserved cell labels, for its agent.

`docker run --cap-drop`, `--add-host`, `--tmpfs`, `--stop-signal`, `--init`, `--group-add` and
`--ulimit` have no cell field: the
endpoint checks them (`parse_*`, ValueError naming the option and the problem) and keeps them
as labels under `cellplane.docker.` (hidden from the container's own labels); the agent reads
them back (`from_labels`) into its `ContainerSpec`. Pure; shared by server and agent.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CAPABILITIES",
    "CAP_DROP_LABEL",
    "EXTRA_HOSTS_LABEL",
    "GROUP_ADD_LABEL",
    "INIT_LABEL",
    "STOP_SIGNAL_LABEL",
    "TMPFS_LABEL",
    "ULIMITS_LABEL",
    "ULIMIT_NAMES",
    "EngineOptions",
    "from_labels",
    "parse_cap_drop",
    "parse_extra_hosts",
    "parse_group_add",
    "parse_tmpfs",
    "parse_ulimits",
    "to_labels",
]

CAP_DROP_LABEL = "cellplane.docker.cap-drop"
EXTRA_HOSTS_LABEL = "cellplane.docker.add-host"
TMPFS_LABEL = "cellplane.docker.tmpfs"
STOP_SIGNAL_LABEL = "cellplane.docker.stop-signal"
INIT_LABEL = "cellplane.docker.init"
GROUP_ADD_LABEL = "cellplane.docker.group-add"
ULIMITS_LABEL = "cellplane.docker.ulimit"

#: The resource limits `--ulimit` names (setrlimit(2), as Docker names them).
ULIMIT_NAMES = frozenset(
    ["as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
     "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"]
)  # fmt: skip

_GROUP = re.compile(r"[0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,31}")

#: The Linux capabilities (capability.h, 5.x), as Docker names them.
CAPABILITIES = frozenset(
    f"CAP_{name}"
    for name in [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
)
# A host name as /etc/hosts takes it: RFC 1123 labels, dots between.
_HOST = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# The tmpfs mount options a container may ask for (Docker passes these to the kernel).
_TMPFS_FLAGS = frozenset(["ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev"])
_TMPFS_VALUES = {
    "size": re.compile(r"[0-9]+[kKmMgG%]?"),
    "mode": re.compile(r"[0-7]{3,4}"),
    "uid": re.compile(r"[0-9]{1,10}"),
    "gid": re.compile(r"[0-9]{1,10}"),
    "nr_inodes": re.compile(r"[0-9]+[kKmMgG]?"),
}
_PATH = re.compile(r"/[^\x00:,]*")
# A stop signal as the endpoint writes it: a name (`SIGINT`, `SIGRTMIN+3`) or a number.
_SIGNAL = re.compile(r"SIG[A-Z]+[0-9]*([+-][0-9]{1,2})?|[0-9]{1,2}")


@dataclass(frozen=True)
class EngineOptions:
    """What the container's engine applies beyond the cell's own fields."""

    cap_drop: tuple[str, ...] = ()  # CAP_ names, or ALL
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (host name, address) lines of /etc/hosts
    tmpfs: tuple[tuple[str, str], ...] = ()  # (path, mount options)
    stop_signal: str | None = None  # as the endpoint checked it (`SIGINT`, `2`...)
    init: bool = False  # the engine's init (catatonit) as PID 1, reaping and passing signals
    group_add: tuple[str, ...] = ()  # supplementary groups, names or numbers
    ulimits: tuple[tuple[str, int, int], ...] = ()  # (name, soft, hard); -1: unlimited


def parse_cap_drop(values: Iterable[object]) -> tuple[str, ...]:
    """`--cap-drop` entries as Docker reads them: a name with or without `CAP_`, in any case,
    or `ALL`. Sorted, without repeats."""
    out: set[str] = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"--cap-drop {value!r}: not a capability name")
        name = value.strip().upper()
        if name == "ALL":
            out.add("ALL")
            continue
        cap = name if name.startswith("CAP_") else f"CAP_{name}"
        if cap not in CAPABILITIES:
            raise ValueError(f"--cap-drop {value}: unknown capability")
        out.add(cap)
    return tuple(sorted(out))


def parse_extra_hosts(values: Iterable[object]) -> tuple[tuple[str, str], ...]:
    """`--add-host` entries, `name:address` or `name=address` (the CLI sends either); the
    address an IPv4 or IPv6 one (`host-gateway` names the daemon's host: not offered here)."""
    out: list[tuple[str, str]] = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"--add-host {value!r}: not NAME:ADDRESS")
        name, sep, address = value.partition("=")
        if not sep:
            name, sep, address = value.partition(":")
        address = address.strip().removeprefix("[").removesuffix("]")
        if not sep or not _HOST.fullmatch(name):
            raise ValueError(
                f"--add-host {value}: not NAME:ADDRESS (a host name, then its address)"
            )
        if address == "host-gateway":
            raise ValueError(f"--add-host {value}: host-gateway is not supported on this endpoint")
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise ValueError(f"--add-host {value}: invalid IP address {address!r}") from None
        out.append((name, address))
    return tuple(out)


def parse_tmpfs(value: object) -> tuple[tuple[str, str], ...]:
    """`--tmpfs PATH[:OPTIONS]` (HostConfig.Tmpfs, path -> options): an absolute path other
    than `/`, options among size, mode, uid, gid, nr_inodes and the usual flags."""
    if not isinstance(value, Mapping):
        raise ValueError("--tmpfs: HostConfig.Tmpfs must map paths to their options")
    out: list[tuple[str, str]] = []
    for path, options in value.items():
        if not isinstance(path, str) or not _PATH.fullmatch(path) or path.rstrip("/") == "":
            raise ValueError(f"--tmpfs {path}: the path must be absolute and not /")
        if not isinstance(options, str):
            raise ValueError(f"--tmpfs {path}: its options must be a string")
        for option in filter(None, options.split(",")):
            key, sep, arg = option.partition("=")
            pattern = _TMPFS_VALUES.get(key)
            ok = key in _TMPFS_FLAGS if not sep else pattern is not None and pattern.fullmatch(arg)
            if not ok:
                raise ValueError(f"--tmpfs {path}:{options}: option {option!r} is not supported")
        out.append((path.rstrip("/"), options))
    return tuple(sorted(out))


def parse_group_add(values: Iterable[object]) -> tuple[str, ...]:
    """`--group-add` entries: group names (as the image's /etc/group has them) or numbers."""
    out: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _GROUP.fullmatch(value):
            raise ValueError(f"--group-add {value}: not a group name or number")
        if value not in out:
            out.append(value)
    return tuple(out)


def parse_ulimits(values: Iterable[object]) -> tuple[tuple[str, int, int], ...]:
    """`--ulimit NAME=SOFT[:HARD]` as the CLI sends it ({"Name", "Soft", "Hard"}); -1 is
    unlimited; the soft limit at most the hard one. One entry per name (the last), sorted."""
    out: dict[str, tuple[str, int, int]] = {}
    for value in values:
        if not isinstance(value, Mapping):
            raise ValueError(f"--ulimit {value!r}: not NAME=SOFT[:HARD]")
        name, soft, hard = value.get("Name"), value.get("Soft"), value.get("Hard")
        if not isinstance(name, str) or name not in ULIMIT_NAMES:
            known = ", ".join(sorted(ULIMIT_NAMES))
            raise ValueError(f"--ulimit {name}: unknown limit (one of {known})")
        numbers = [v for v in (soft, hard) if isinstance(v, int) and not isinstance(v, bool)]
        if len(numbers) != 2 or not all(-1 <= v < 2**63 for v in numbers):
            raise ValueError(f"--ulimit {name}: the limits must be whole numbers (-1: unlimited)")
        low, high = (2**64 if v == -1 else v for v in numbers)
        if low > high:
            raise ValueError(f"--ulimit {name}={soft}:{hard}: the soft limit is above the hard one")
        out[name] = (name, numbers[0], numbers[1])
    return tuple(out[k] for k in sorted(out))


def to_labels(opts: EngineOptions) -> dict[str, str]:
    """The reserved labels that carry `opts` (none for an option not given)."""
    labels: dict[str, str] = {}
    if opts.cap_drop:
        labels[CAP_DROP_LABEL] = ",".join(opts.cap_drop)
    if opts.extra_hosts:
        labels[EXTRA_HOSTS_LABEL] = json.dumps([list(h) for h in opts.extra_hosts])
    if opts.tmpfs:
        labels[TMPFS_LABEL] = json.dumps(dict(opts.tmpfs), sort_keys=True)
    if opts.stop_signal:
        labels[STOP_SIGNAL_LABEL] = opts.stop_signal
    if opts.init:
        labels[INIT_LABEL] = "true"
    if opts.group_add:
        labels[GROUP_ADD_LABEL] = ",".join(opts.group_add)
    if opts.ulimits:
        labels[ULIMITS_LABEL] = ",".join(f"{n}={s}:{h}" for n, s, h in opts.ulimits)
    return labels


def from_labels(labels: Mapping[str, str]) -> EngineOptions:
    """The options the labels carry, checked again (ValueError naming the option)."""
    caps = labels.get(CAP_DROP_LABEL)
    hosts = labels.get(EXTRA_HOSTS_LABEL)
    tmpfs = labels.get(TMPFS_LABEL)
    try:
        host_entries = [f"{n}={a}" for n, a in json.loads(hosts)] if hosts else []
        tmpfs_map = json.loads(tmpfs) if tmpfs else {}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"a malformed engine option label: {exc}") from None
    stop_signal = labels.get(STOP_SIGNAL_LABEL) or None
    if stop_signal is not None and not _SIGNAL.fullmatch(stop_signal):
        raise ValueError(f"--stop-signal {stop_signal}: not a signal")
    groups = labels.get(GROUP_ADD_LABEL)
    ulimits = []
    for entry in filter(None, labels.get(ULIMITS_LABEL, "").split(",")):
        name, _, limits = entry.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            ulimits.append({"Name": name, "Soft": int(soft), "Hard": int(hard)})
        except ValueError:
            raise ValueError(f"--ulimit {entry}: a malformed engine option label") from None
    return EngineOptions(
        cap_drop=parse_cap_drop(caps.split(",")) if caps else (),
        extra_hosts=parse_extra_hosts(host_entries),
        tmpfs=parse_tmpfs(tmpfs_map),
        stop_signal=stop_signal,
        init=labels.get(INIT_LABEL) == "true",
        group_add=parse_group_add(groups.split(",")) if groups else (),
        ulimits=parse_ulimits(ulimits),
    )
