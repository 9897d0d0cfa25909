"""The podman driver's request bodies and the parsing of the engine's answers (pure).

`podman.PodmanDriver` sends these and reads those; they are functions of their inputs only, so
they are unit-tested without an engine (tests/unit/drivers/test_driver_payloads.py).
"""

from __future__ import annotations

import builtins
import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Any

from cellplane.drivers import errors
from cellplane.drivers.base import (
    DEFAULT_ULIMITS,
    DROPPED_CAPABILITIES,
    ContainerInfo,
    ContainerSpec,
    NetworkSpec,
    PortSpec,
)

__all__ = [
    "DNS_OPTIONS",
    "LIBPOD_PREFIX",
    "IPNetwork",
    "compat_create_body",
    "conflicting_networks",
    "container_info_from_inspect",
    "container_info_from_list",
    "label_filters",
    "libpod_create_body",
    "libpod_network_body",
    "libpod_update_body",
    "logs_params",
    "network_fits",
    "parse_load_output",
    "quota_at_create",
    "sized_candidates",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The path prefix of podman's own (libpod) API, beside the Docker-compatible one on the socket.
LIBPOD_PREFIX = "/v4.0.0/libpod"

_MIB = 1024 * 1024
_CPU_PERIOD_US = 100_000
_MIN_CPU_QUOTA_US = 1_000  # the kernel refuses a CFS quota under 1 ms
_ZERO_TIME = "0001-01-01"
_EXITED_STATES = frozenset({"exited", "stopped", "dead"})
_EXIT_STATUS = re.compile(r"Exited \((-?\d+)\)")
_LOADED = re.compile(r"Loaded image(?:\(s\))?(?: ID)?:\s*(.+)")


def label_filters(labels: dict[str, str]) -> dict[str, builtins.list[str]]:
    """The engine's list filter matching every one of `labels`."""
    return {"label": [f"{k}={v}" for k, v in sorted(labels.items())]} if labels else {}


def _port_key(port: PortSpec) -> str:
    return f"{port.container_port}/{port.protocol}"


#: The smallest CPU limit the engine gets at create. A CFS quota throttles the runtime's own
#: start-up in the container's cgroup (`runc init`): at 0.01 core up to 30x slower, at 0.2 a
#: tail (p99 215 ms against 165 ms), from 0.5 core (50 ms of CPU per 100 ms period) nothing
#: measurable (40 interleaved `docker start`s each on podman 4.3: p50 126.9 ms with the quota,
#: 129.9 ms without). Smaller limits come from `apply_limits` once the container runs.
QUOTA_AT_CREATE_MIN_CPU = 0.5


def quota_at_create(spec: ContainerSpec) -> int | None:
    """The CFS quota (us per `_CPU_PERIOD_US`) to create the container with, or None: set after
    the start (a small limit, or a sandbox's: a quota during gVisor's boot slows its start)."""
    if spec.runtime is not None or spec.cpu < QUOTA_AT_CREATE_MIN_CPU:
        return None
    return _cpu_quota(spec.cpu)


def _cap_drop(spec: ContainerSpec) -> list[str]:
    """The capabilities every cell goes without, and those the container's own `--cap-drop`
    adds (ALL: every one)."""
    if "ALL" in spec.cap_drop:
        return ["ALL"]
    more = (c.removeprefix("CAP_") for c in spec.cap_drop)
    return list(dict.fromkeys([*DROPPED_CAPABILITIES, *more]))


def compat_create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The Docker-API `POST /containers/create` body for an image-based spec."""
    if spec.image is None:
        raise ValueError("compat_create_body needs an image spec; rootfs uses libpod")
    host_config: dict[str, Any] = {}
    if spec.memory_mb:
        host_config["Memory"] = spec.memory_mb * _MIB
    quota = quota_at_create(spec)
    if quota is not None:
        host_config.update(CpuPeriod=_CPU_PERIOD_US, CpuQuota=quota)
    if spec.runtime is not None:
        host_config["Runtime"] = spec.runtime
    if spec.ports:
        host_config["PortBindings"] = {
            _port_key(p): [
                {"HostIp": "", "HostPort": "" if p.host_port is None else str(p.host_port)}
            ]
            for p in spec.ports
        }
    if spec.mounts:
        host_config["Mounts"] = [
            {"Type": "volume", "Source": m.volume, "Target": m.target, "ReadOnly": m.read_only}
            if m.host_path is None
            else {
                "Type": "bind",
                "Source": m.host_path,
                "Target": m.target,
                "ReadOnly": m.read_only,
                "BindOptions": {"Propagation": "rprivate"},
            }
            for m in spec.mounts
        ]
    host_config.update(
        {
            "CapDrop": _cap_drop(spec),
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "ReadonlyRootfs": spec.read_only,
        }
    )
    if spec.extra_hosts:
        host_config["ExtraHosts"] = [f"{name}:{address}" for name, address in spec.extra_hosts]
    if spec.tmpfs:
        host_config["Tmpfs"] = dict(spec.tmpfs)
    if spec.init:
        host_config["Init"] = True
    if spec.group_add:
        host_config["GroupAdd"] = list(spec.group_add)
    if spec.ulimits:
        # Given any, podman drops its default_ulimits for the host's, above its hard limits:
        # the defaults come along for those not asked for.
        asked = {name: (soft, hard) for name, soft, hard in spec.ulimits}
        limits = {name: (soft, hard) for name, soft, hard in DEFAULT_ULIMITS} | asked
        host_config["Ulimits"] = [
            {"Name": name, "Soft": soft, "Hard": hard} for name, (soft, hard) in limits.items()
        ]
    if spec.pids_limit:
        host_config["PidsLimit"] = spec.pids_limit
    body: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": dict(spec.labels),
        "HostConfig": host_config,
    }
    if spec.stdin or spec.tty:
        body.update({"OpenStdin": spec.stdin, "StdinOnce": spec.stdin_once, "Tty": spec.tty})
    if spec.stop_signal:
        body["StopSignal"] = spec.stop_signal
    if spec.command is not None:
        body["Cmd"] = list(spec.command)
    if spec.entrypoint is not None:
        body["Entrypoint"] = list(spec.entrypoint)
    if spec.workdir:
        body["WorkingDir"] = spec.workdir
    if spec.user:
        body["User"] = spec.user
    if spec.hostname:
        body["Hostname"] = spec.hostname
    if spec.ports:
        body["ExposedPorts"] = {_port_key(p): {} for p in spec.ports}
    if spec.network is not None:
        host_config["NetworkMode"] = spec.network
        host_config["DnsOptions"] = list(DNS_OPTIONS)
        endpoint: dict[str, Any] = {"Aliases": list(spec.aliases)}
        if spec.address:
            endpoint["IPAMConfig"] = {"IPv4Address": spec.address}
        endpoints = {spec.network: endpoint}
        for name, address in spec.extra_networks.items():
            more: dict[str, Any] = {"Aliases": list(spec.aliases)}
            if address:
                more["IPAMConfig"] = {"IPv4Address": address}
            endpoints[name] = more
        body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
    return body


#: Resolver options of every cell on a project network. glibc's defaults (5 s a try, 2 tries, for
#: each name server and each search domain) turn one lookup of a name that is just gone, while
#: aardvark-dns reloads its configuration, into a stall of up to a minute; programs that resolve
#: in their main loop (Redis Sentinel) stop for that long. With these a failed lookup costs a few
#: seconds at worst.
DNS_OPTIONS: tuple[str, ...] = ("timeout:1", "attempts:2")


def libpod_create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The libpod `POST /libpod/containers/create` body (a SpecGenerator) for a rootfs spec.

    The rootfs is always mounted through an overlay so that cells never write into a
    directory they share with other cells or with the host.
    """
    if spec.rootfs is None:
        raise ValueError("libpod_create_body needs a rootfs spec")
    body: dict[str, Any] = {
        "name": spec.name,
        "rootfs": spec.rootfs,
        "rootfs_overlay": True,
        "command": list(spec.command or []),
        "env": dict(spec.env),
        "labels": dict(spec.labels),
        "cap_drop": _cap_drop(spec),
        "no_new_privileges": True,
        "privileged": False,
        "read_only_filesystem": spec.read_only,
    }
    if spec.stdin or spec.tty:
        body.update({"stdin": spec.stdin, "terminal": spec.tty})
    if spec.tmpfs or spec.stop_signal or spec.init or spec.group_add or spec.ulimits:
        raise ValueError(
            "--tmpfs, --stop-signal, --init, --group-add and --ulimit are not offered for a"
            " rootfs cell"
        )
    if spec.extra_hosts:
        body["hostadd"] = [f"{name}:{address}" for name, address in spec.extra_hosts]
    if spec.hostname:
        body["hostname"] = spec.hostname
    if spec.workdir:
        body["work_dir"] = spec.workdir
    if spec.user:
        body["user"] = spec.user
    limits: dict[str, Any] = {}
    if spec.memory_mb:
        limits["memory"] = {"limit": spec.memory_mb * _MIB}
    quota = quota_at_create(spec)
    if quota is not None:  # else from `apply_limits`, after the start
        limits["cpu"] = {"quota": quota, "period": _CPU_PERIOD_US}
    if spec.pids_limit:
        limits["pids"] = {"limit": spec.pids_limit}
    if spec.runtime is not None:
        body["oci_runtime"] = spec.runtime
    if limits:
        body["resource_limits"] = limits
    if spec.network is not None:
        body["netns"] = {"nsmode": "bridge"}
        body["dns_option"] = list(DNS_OPTIONS)
        net: dict[str, Any] = {"aliases": list(spec.aliases)}
        if spec.address:
            net["static_ips"] = [spec.address]
        nets = {spec.network: net}
        for name, address in spec.extra_networks.items():
            nets[name] = {"aliases": list(spec.aliases)}
            if address:
                nets[name]["static_ips"] = [address]
        body["Networks"] = nets
    if spec.ports:
        body["portmappings"] = [
            {
                "container_port": p.container_port,
                "host_port": p.host_port or 0,
                "protocol": p.protocol,
            }
            for p in spec.ports
        ]
    volumes = [m for m in spec.mounts if m.host_path is None]
    binds = [m for m in spec.mounts if m.host_path is not None]
    if volumes:
        body["volumes"] = [
            {"Name": m.volume, "Dest": m.target, "Options": ["ro"] if m.read_only else []}
            for m in volumes
        ]
    if binds:
        body["mounts"] = [
            {
                "type": "bind",
                "source": m.host_path,
                "destination": m.target,
                "options": ["rbind", "rprivate", *(["ro"] if m.read_only else [])],
            }
            for m in binds
        ]
    return body


def _cpu_quota(cpu: float) -> int:
    return max(_MIN_CPU_QUOTA_US, round(cpu * _CPU_PERIOD_US))


def logs_params(
    tail: int | None, follow: bool, timestamps: bool, since: int, stdout: bool, stderr: bool
) -> dict[str, Any]:
    """The query of the Docker API's `GET /containers/{id}/logs`."""
    params: dict[str, Any] = {
        "stdout": int(stdout),
        "stderr": int(stderr),
        "follow": int(follow),
        "timestamps": int(timestamps),
        "tail": "all" if tail is None else tail,
    }
    if since:
        params["since"] = since
    return params


def libpod_update_body(cpu: float, memory_mb: int) -> dict[str, Any]:
    """The libpod `POST /libpod/containers/{id}/update` body (a LinuxResources) for the limits.

    A zero limit lifts it: quota -1 (no CFS quota) and memory -1 (unlimited). A CPU limit under
    0.01 is raised to it: the kernel refuses a CFS quota under 1 ms.
    """
    if cpu < 0 or memory_mb < 0:
        raise ValueError(f"cpu and memory_mb must not be negative: {cpu}, {memory_mb}")
    quota = _cpu_quota(cpu) if cpu else -1
    return {
        "cpu": {"quota": quota, "period": _CPU_PERIOD_US},
        "memory": {"limit": memory_mb * _MIB if memory_mb else -1},
    }


def network_fits(subnets: Iterable[str], spec: NetworkSpec) -> bool:
    """Whether an existing network with `subnets` is the one `spec` asks for (pure)."""
    have = [ipaddress.ip_network(s) for s in subnets]
    if spec.subnet is not None:
        return ipaddress.ip_network(spec.subnet) in have
    if spec.prefix_length is not None:
        return any(n.prefixlen == spec.prefix_length for n in have)
    return True


def conflicting_networks(existing: Iterable[dict[str, Any]], spec: NetworkSpec) -> list[str]:
    """The engine networks among `existing` (libpod's network list) other than `spec`'s own
    that sit on `spec`'s bridge or overlap its subnet (pure)."""
    want = ipaddress.ip_network(spec.subnet) if spec.subnet is not None else None
    found = []
    for net in existing:
        name = str(net.get("name", ""))
        if not name or name == spec.name:
            continue
        same_bridge = spec.interface is not None and net.get("network_interface") == spec.interface
        subnets = [ipaddress.ip_network(str(s["subnet"])) for s in net.get("subnets") or []]
        overlaps = want is not None and any(want.overlaps(s) for s in subnets)
        if same_bridge or overlaps:
            found.append(name)
    return sorted(found)


def sized_candidates(
    pools: Iterable[str], prefix: int, used: Iterable[IPNetwork]
) -> Iterator[ipaddress.IPv4Network]:
    """The `prefix` blocks of `pools`, in order, that overlap none of `used` (pure)."""
    taken = [u for u in used if u.version == 4]
    for pool in pools:
        net = ipaddress.ip_network(pool)
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > prefix:
            continue
        for candidate in net.subnets(new_prefix=prefix):
            if not any(candidate.overlaps(u) for u in taken):
                yield candidate


def libpod_network_body(spec: NetworkSpec) -> dict[str, Any]:
    """The libpod network create body: a network with DNS, isolated from other networks."""
    body: dict[str, Any] = {
        "name": spec.name,
        "driver": spec.driver,
        "dns_enabled": True,
        "internal": spec.internal,
        "labels": dict(spec.labels),
        "options": {"isolate": "true"},
    }
    if spec.subnet is not None:
        body["subnets"] = [{"subnet": spec.subnet}]
    if spec.interface is not None:
        body["network_interface"] = spec.interface
    if spec.mtu is not None:
        body["options"]["mtu"] = str(spec.mtu)
    return body


def _time_or_none(value: object) -> str | None:
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME):
        return None
    return value


def _ports_from_inspect(raw: object) -> builtins.list[PortSpec]:
    ports: builtins.list[PortSpec] = []
    if not isinstance(raw, dict):
        return ports
    for key, bindings in sorted(raw.items()):
        number, _, protocol = str(key).partition("/")
        for binding in bindings or []:
            host = int(binding.get("HostPort") or 0)
            ports.append(PortSpec(int(number), host or None, protocol or "tcp"))
    return ports


def _address(networks: object) -> str | None:
    if isinstance(networks, dict):
        for net in networks.values():
            address = (net or {}).get("IPAddress")
            if address:
                return str(address)
    return None


def _addresses(networks: object) -> dict[str, str]:
    """The IPv4 address on each network, by the engine's name (those that have one)."""
    if not isinstance(networks, dict):
        return {}
    return {
        str(name): str(net["IPAddress"])
        for name, net in sorted(networks.items())
        if isinstance(net, dict) and net.get("IPAddress")
    }


def container_info_from_inspect(attrs: dict[str, Any]) -> ContainerInfo:
    """A `ContainerInfo` from a Docker-API `GET /containers/{id}/json` answer."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    settings = attrs.get("NetworkSettings") or {}
    status = str(state.get("Status") or "unknown")
    exit_code = state.get("ExitCode")
    return ContainerInfo(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name") or "").lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        state=status,
        running=bool(state.get("Running")) or status == "paused",  # frozen, not ended
        exit_code=int(exit_code) if status in _EXITED_STATES and exit_code is not None else None,
        started_at=_time_or_none(state.get("StartedAt")),
        finished_at=_time_or_none(state.get("FinishedAt")) if status in _EXITED_STATES else None,
        address=_address(settings.get("Networks")) or settings.get("IPAddress") or None,
        image=config.get("Image") or None,
        ports=_ports_from_inspect(settings.get("Ports")),
        addresses=_addresses(settings.get("Networks")),
        pid=(int(state.get("Pid") or 0) or None) if status in ("running", "paused") else None,
    )


def container_info_from_list(item: dict[str, Any]) -> ContainerInfo:
    """A `ContainerInfo` from one entry of `GET /containers/json` (no timestamps there)."""
    status = str(item.get("State") or "unknown")
    exit_code: int | None = None
    if status in _EXITED_STATES:
        match = _EXIT_STATUS.search(str(item.get("Status") or ""))
        exit_code = int(match.group(1)) if match else None
    ports = [
        PortSpec(
            int(p["PrivatePort"]), int(p.get("PublicPort") or 0) or None, p.get("Type") or "tcp"
        )
        for p in item.get("Ports") or []
    ]
    names = item.get("Names") or [""]
    return ContainerInfo(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/"),
        labels=dict(item.get("Labels") or {}),
        state=status,
        running=status in ("running", "paused"),
        exit_code=exit_code,
        address=_address((item.get("NetworkSettings") or {}).get("Networks")),
        image=item.get("Image") or None,
        ports=ports,
        addresses=_addresses((item.get("NetworkSettings") or {}).get("Networks")),
    )


def parse_load_output(chunks: Iterable[dict[str, Any]]) -> builtins.list[str]:
    """Image names/ids from the JSON stream of `POST /images/load`; raise on an error chunk."""
    loaded: builtins.list[str] = []
    for chunk in chunks:
        if chunk.get("error") or chunk.get("errorDetail"):
            detail = chunk.get("error") or chunk.get("errorDetail")
            raise errors.PermanentDriverError(f"image load failed: {detail}")
        match = _LOADED.search(str(chunk.get("stream") or ""))
        if match:
            loaded.extend(n.strip() for n in match.group(1).split(",") if n.strip())
    return loaded
