"""A Docker `POST /containers/create` body -> the fields of a cell. Pure: no I/O, no state.

What Cellplane cannot do, or will not allow, is refused with :class:`Refused`, naming the docker
option (`--privileged is not allowed on this endpoint`): nothing is created. Options the docker
CLI always sends with their defaults (empty lists, zero sizes, `false`) are accepted.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any

from cellplane.dockerapi import naming
from cellplane.dockerapi.engine_opts import option_labels
from cellplane.dockerapi.healthchecks import healthcheck_fields
from cellplane.dockerapi.refusal import Refused
from cellplane.validation import is_dns_label
from cellplane.wire.exec import (
    ALIASES_LABEL,
    MAX_DIMENSION,
    STDIN_LABEL,
    TTY_LABEL,
    TTY_SIZE_LABEL,
)

__all__ = [
    "API_VERSION",
    "AUTO_REMOVE_LABEL",
    "ISOLATION_LABEL",
    "MIN_API_VERSION",
    "RESTART_LABEL",
    "RUNTIMES",
    "Refused",
    "cell_fields",
    "check_api_version",
    "console_size",
    "image_candidates",
    "loads",
    "parse_env",
    "restart_policy",
]

#: The Engine API version this endpoint speaks (what podman 4.3 reports; the docker CLI 28
#: negotiates down to it) and the oldest a client may ask for.
API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
#: Docker's `unless-stopped` is Cellplane's `always` (a stopped cell stays stopped); this label
#: keeps the name the client gave, so `inspect` reports it back.
RESTART_LABEL = "cellplane.docker.restart"
#: The label that marks a `--rm` container: removed once it has exited (dockerapi.streams).
AUTO_REMOVE_LABEL = "cellplane.docker.autoremove"
_MIB = 1024 * 1024


def loads(raw: str | bytes) -> Any:
    """JSON a client sent; ValueError for anything that is not JSON, including a document nested
    deeper than the parser's recursion limit (which `json.loads` answers with RecursionError)."""
    try:
        return json.loads(raw)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def check_api_version(version: str) -> None:
    """A `/v1.NN/...` prefix the endpoint serves; older than MIN_API_VERSION is refused."""
    if not re.fullmatch(r"1\.\d{1,3}", version):
        raise Refused(400, f"API version {version!r} is not a version this endpoint knows")
    if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
        raise Refused(
            400,
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version",
        )


def image_candidates(ref: str) -> list[str]:
    """The names a Docker image reference may have among Cellplane's images, most exact first:
    `docker.io/library/busybox:latest` -> itself, `busybox:latest`, `busybox`."""
    out = [ref]
    name = ref
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    name = name.removeprefix("library/")
    out.append(name)
    if name.endswith(":latest"):
        out.append(name[: -len(":latest")])
    return list(dict.fromkeys(out))


def parse_env(items: list[str] | None) -> dict[str, str]:
    """`["K=V", ...]` -> a dict; a bare `K` (a variable the client had unset) is left out."""
    env: dict[str, str] = {}
    for item in items or []:
        if not isinstance(item, str):
            raise Refused(400, f"Env: {item!r} is not a string")
        k, sep, v = item.partition("=")
        if not k:
            raise Refused(400, f"invalid environment variable: {item!r}")
        if sep:
            env[k] = v
    return env


# Options refused when set to anything but their default: (section, key) -> (option, why).
_FORBIDDEN = "is not allowed on this endpoint"
_NOT_YET = "is not supported on this endpoint yet"
_REFUSED: dict[tuple[str, str], tuple[str, str, int]] = {
    ("HostConfig", "Privileged"): ("--privileged", _FORBIDDEN, 403),
    ("HostConfig", "CapAdd"): ("--cap-add", _FORBIDDEN, 403),
    ("HostConfig", "Devices"): ("--device", _FORBIDDEN, 403),
    ("HostConfig", "DeviceRequests"): ("--gpus", _FORBIDDEN, 403),
    ("HostConfig", "SecurityOpt"): ("--security-opt", _FORBIDDEN, 403),
    ("HostConfig", "CgroupParent"): ("--cgroup-parent", _FORBIDDEN, 403),
    ("HostConfig", "Sysctls"): ("--sysctl", _FORBIDDEN, 403),
    ("HostConfig", "VolumesFrom"): ("--volumes-from", _NOT_YET, 400),
    ("HostConfig", "Links"): ("--link", _NOT_YET, 400),
    ("HostConfig", "Dns"): ("--dns", _NOT_YET, 400),
    ("HostConfig", "DnsSearch"): ("--dns-search", _NOT_YET, 400),
    ("HostConfig", "PublishAllPorts"): ("-P/--publish-all", _NOT_YET, 400),
    ("HostConfig", "CpusetCpus"): ("--cpuset-cpus", _NOT_YET, 400),
    ("HostConfig", "CpusetMems"): ("--cpuset-mems", _NOT_YET, 400),
    ("HostConfig", "MemoryReservation"): ("--memory-reservation", _NOT_YET, 400),
    ("HostConfig", "OomKillDisable"): ("--oom-kill-disable", _NOT_YET, 400),
    ("Config", "Domainname"): ("--domainname", _NOT_YET, 400),
    ("Config", "MacAddress"): ("--mac-address", _NOT_YET, 400),
}
# Namespace modes: "host" (or another container's) is refused, the default accepted.
_MODES = {
    "PidMode": "--pid",
    "IpcMode": "--ipc",
    "UTSMode": "--uts",
    "UsernsMode": "--userns",
    "CgroupnsMode": "--cgroupns",
}
_DEFAULT_MODES = {"", "private", "shareable"}


def _check_refused(body: dict[str, Any], host: dict[str, Any]) -> None:
    sections = {"Config": body, "HostConfig": host}
    for (section, key), (option, why, status) in _REFUSED.items():
        if sections[section].get(key):
            raise Refused(status, f"{option} {why}")
    for key, option in _MODES.items():
        mode = host.get(key) or ""
        if mode == "host":
            raise Refused(403, f"{option} host {_FORBIDDEN}")
        if mode not in _DEFAULT_MODES:
            raise Refused(400, f"{option} {mode} {_NOT_YET}")
    log = host.get("LogConfig") or {}
    if log.get("Type") not in (None, "", "json-file", "k8s-file"):
        raise Refused(400, f"--log-driver {log.get('Type')} {_NOT_YET}")


def _network(
    host: dict[str, Any], body: dict[str, Any], name: str | None
) -> tuple[str | None, list[str] | None]:
    """The project network the container joins (None: the default one, Docker's "bridge") by
    the name the client gave, and the aliases it asks for there (None: none asked)."""
    mode = host.get("NetworkMode") or "default"
    if mode == "host":
        raise Refused(403, f"--network host {_FORBIDDEN}")
    if mode.startswith("container:"):
        raise Refused(403, f"--network {mode} {_FORBIDDEN}")
    if mode == "none":
        raise Refused(400, f"--network none {_NOT_YET}")
    endpoints = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig")) or {}
    if not isinstance(endpoints, dict):
        raise Refused(400, "NetworkingConfig.EndpointsConfig must be a JSON object")
    network = mode if mode != "default" or not endpoints else next(iter(endpoints))
    asked: list[str] | None = None
    for ep_name, ep in endpoints.items():
        ep = ep or {}
        if ep.get("Aliases"):
            asked = _aliases(ep["Aliases"], name)
        for key, option in (
            ("IPAMConfig", "--ip"),
            ("Links", "--link"),
            ("MacAddress", "--mac-address"),
        ):
            if ep.get(key):
                raise Refused(400, f"{option} (network {ep_name}) {_NOT_YET}")
    if network in ("default", "bridge"):
        return None, asked
    if naming.dns_name(network) is None:
        raise Refused(404, f"network {network} not found")
    return network, asked


def _more_networks(host: dict[str, Any], body: dict[str, Any], first: str | None) -> list[str]:
    """The networks after the first (`docker run --network a --network b`), by their names
    here ("default" for Docker's "bridge"), in the order the client sent them."""
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    seen = {first or "default"}
    out = []
    for ep_name in endpoints:
        name = "default" if ep_name in ("default", "bridge") else naming.dns_name(ep_name)
        if name is None:
            raise Refused(404, f"network {ep_name} not found")
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _aliases(raw: Any, name: str | None) -> list[str]:
    """`--network-alias` values (Compose's service name): DNS labels, the container's own name
    left out (it is always one)."""
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise Refused(400, "Aliases must be a list of strings")
    out = [a for a in dict.fromkeys(raw) if a != name]
    for alias in out:
        if not is_dns_label(alias):
            raise Refused(
                400,
                f"--network-alias {alias!r}: aliases on this endpoint are DNS labels "
                "(lowercase letters, digits and '-')",
            )
    if len(out) > naming.MAX_ALIASES:
        raise Refused(400, f"--network-alias: at most {naming.MAX_ALIASES} aliases")
    return out


def _ports(host: dict[str, Any]) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        m = re.fullmatch(r"(\d{1,5})(?:/(tcp|udp|sctp))?", str(key))
        if m is None:
            raise Refused(400, f"-p: invalid container port {key!r}")
        if m.group(2) == "sctp":
            raise Refused(400, f"-p {key}: sctp {_NOT_YET}")
        for b in bindings or [{}]:
            host_ip = (b or {}).get("HostIp") or ""
            if host_ip not in ("", "0.0.0.0", "::"):
                raise Refused(400, f"-p {host_ip}:...: binding to one host address {_NOT_YET}")
            hp = str((b or {}).get("HostPort") or "")
            if hp and not hp.isdigit():
                raise Refused(400, f"-p {hp}:{key}: host port ranges {_NOT_YET}")
            ports.append(
                {
                    "container_port": int(m.group(1)),
                    "host_port": int(hp) if hp else None,
                    "protocol": m.group(2) or "tcp",
                }
            )
    return ports


def _volume_name(source: str) -> str:
    """A volume's Cellplane name: Compose's `project_data` is the volume `project-data`."""
    from cellplane.dockerapi.naming import dns_name

    return dns_name(source) or source


def _host_source(option: str, source: str) -> str:
    """A bind mount's host path as given: absolute (the service checks it against the
    operator's allowed host paths, `CELLPLANE_ALLOWED_HOST_PATHS`: 403 naming it otherwise)."""
    if not source.startswith("/"):
        raise Refused(400, f"{option}: the host path {source!r} must be an absolute path")
    return source


def _volumes(body: dict[str, Any], host: dict[str, Any]) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    for bind in host.get("Binds") or []:
        parts = str(bind).split(":")
        if len(parts) not in (2, 3):
            raise Refused(400, f"-v {bind}: expected NAME:/path[:ro] or /host/path:/path[:ro]")
        source, target = parts[0], parts[1]
        opts = parts[2].split(",") if len(parts) == 3 else []
        unknown = [o for o in opts if o not in ("ro", "rw", "z", "Z", "rprivate")]
        if unknown:
            raise Refused(400, f"-v {bind}: option {unknown[0]!r} {_NOT_YET}")
        if source.startswith(("/", ".", "~")):
            path = _host_source(f"-v {source}:{target}", source)
            mounts.append({"host_path": path, "path": target, "read_only": "ro" in opts})
            continue
        if "rprivate" in opts:
            raise Refused(400, f"-v {bind}: 'rprivate' is an option of host paths only")
        mounts.append({"volume": _volume_name(source), "path": target, "read_only": "ro" in opts})
    for m in host.get("Mounts") or []:
        kind = m.get("Type") or ""
        if kind == "bind":
            mounts.append(_bind_mount(m))
            continue
        if kind != "volume" or not m.get("Source"):
            raise Refused(
                400, f"--mount type={kind or '?'} {_NOT_YET} (named volumes and host paths only)"
            )
        mounts.append(
            {
                "volume": _volume_name(str(m["Source"])),
                "path": m.get("Target") or "",
                "read_only": bool(m.get("ReadOnly")),
            }
        )
    named = {m["path"] for m in mounts}
    anonymous = [p for p in (body.get("Volumes") or {}) if p not in named]
    if anonymous:
        raise Refused(
            400,
            f"-v {anonymous[0]}: anonymous volumes {_NOT_YET}; name it (-v NAME:{anonymous[0]})",
        )
    return mounts


def _bind_mount(m: dict[str, Any]) -> dict[str, Any]:
    """`--mount type=bind,source=/host/path,target=/path[,readonly]` as a cell's mount."""
    source = str(m.get("Source") or "")
    option = f"--mount type=bind,source={source}"
    if not source:
        raise Refused(400, "--mount type=bind: a source (the host path) is required")
    bind = m.get("BindOptions") or {}
    if not isinstance(bind, dict):
        raise Refused(400, f"{option}: BindOptions must be a JSON object")
    if bind.get("Propagation") not in (None, "", "rprivate"):
        raise Refused(400, f"{option}: bind-propagation={bind['Propagation']} {_NOT_YET}")
    if bind.get("CreateMountpoint"):
        raise Refused(400, f"{option}: bind-create-src: host directories are never created here")
    if any(bind.get(k) for k in ("NonRecursive", "ReadOnlyNonRecursive", "ReadOnlyForceRecursive")):
        raise Refused(400, f"{option}: non-default bind recursion {_NOT_YET}")
    return {
        "host_path": _host_source(option, source),
        "path": m.get("Target") or "",
        "read_only": bool(m.get("ReadOnly")),
    }


def _restart(host: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    return restart_policy(host.get("RestartPolicy") or {}, labels)


def restart_policy(rp: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    """Docker's `RestartPolicy` as a cell's `restart` ({policy, max_retries}); `unless-stopped`
    (Cellplane's `always`) is kept in `labels` to be reported back as given."""
    name = rp.get("Name") or "no"
    retries = int(rp.get("MaximumRetryCount") or 0)
    if name == "no":
        return {"policy": "never"}
    if name in ("always", "unless-stopped"):
        if name == "unless-stopped":
            labels[RESTART_LABEL] = name
        return {"policy": "always"}
    if name == "on-failure":
        return {"policy": "on-failure", "max_retries": retries or None}
    raise Refused(400, f"--restart {name}: invalid restart policy")


def _size(host: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    nano = int(host.get("NanoCpus") or 0)
    quota, period = int(host.get("CpuQuota") or 0), int(host.get("CpuPeriod") or 0)
    if nano and quota:
        raise Refused(400, "--cpus and --cpu-quota cannot be given together")
    if nano:
        out["cpu"] = nano / 1e9
    elif quota:
        out["cpu"] = quota / (period or 100_000)
    memory = int(host.get("Memory") or 0)
    if memory:
        if memory < 6 * _MIB:
            raise Refused(400, "Minimum memory limit allowed is 6MB")
        out["memory_mb"] = math.ceil(memory / _MIB)
    return out


def _name(name: str | None, image: str) -> str:
    given = name
    if name:
        name = naming.dns_name(name.removeprefix("/"))
        if name is None:
            raise Refused(
                400,
                f"container name {given!r}: names on this endpoint are cell names, DNS labels "
                "(lowercase letters, digits and '-', at most 63, starting with a letter or digit; "
                "'_' is taken as '-')",
            )
        return name
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0].lower()
    base = re.sub(r"[^a-z0-9-]+", "-", base).strip("-")[:40] or "container"
    return f"{base}-{secrets.token_hex(3)}"


def cell_fields(name: str | None, body: dict[str, Any]) -> dict[str, Any]:
    """The `CellCreate` fields for a docker create body (the image by its docker reference;
    the caller resolves it). Raises :class:`Refused` for what the endpoint does not do, and
    (400) for a field of the wrong JSON type anywhere in the body (dockerd's decoder refuses
    those before reading the body: here the mapping meets them as it reads)."""
    try:
        return _cell_fields(name, body)
    except (AttributeError, TypeError, ValueError) as exc:
        raise Refused(400, f"invalid container config: a field has the wrong type ({exc})") from exc


def _cell_fields(name: str | None, body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise Refused(400, "HostConfig must be a JSON object")
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise Refused(400, "No image was specified")
    _check_refused(body, host)
    given = name.removeprefix("/") if name else None
    network, aliases = _network(host, body, given)
    labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
    isolation = _isolation(host, labels.pop(ISOLATION_LABEL, None))
    reserved = [k for k in labels if k.startswith("cellplane.")]
    if reserved:
        raise Refused(400, f"--label {reserved[0]}: labels starting with 'cellplane.' are reserved")
    fields: dict[str, Any] = {
        "name": _name(given, image),
        "image": image,
        "command": _strings(body.get("Cmd"), "Cmd"),
        "env": parse_env(body.get("Env")),
        "ports": _ports(host),
        "volumes": _volumes(body, host),
        "restart": _restart(host, labels),
        "labels": labels,
        "start": False,  # docker create makes a container that runs on `start`
        **_size(host),
    }
    entrypoint = _strings(body.get("Entrypoint"), "Entrypoint")
    if entrypoint is not None:
        fields["entrypoint"] = [] if entrypoint == [""] else entrypoint
    for key, field in (("WorkingDir", "workdir"), ("User", "user"), ("Hostname", "hostname")):
        if body.get(key):
            fields[field] = str(body[key])
    if (check := healthcheck_fields(body.get("Healthcheck"))) is not None:
        fields["healthcheck"] = check
    if body.get("StopTimeout") is not None:
        fields["stop_timeout"] = float(body["StopTimeout"])
    if host.get("ReadonlyRootfs"):
        fields["read_only"] = True
    pids = host.get("PidsLimit")
    if pids:  # null or 0: the default limit
        if not isinstance(pids, int) or isinstance(pids, bool) or pids < 0:
            raise Refused(
                400, "--pids-limit: a cell always has a pids limit; give a number (16 or more)"
            )
        fields["pids_limit"] = pids
    if isolation is not None:
        fields["isolation"] = isolation
    if host.get("AutoRemove"):
        if fields["restart"]["policy"] != "never":
            raise Refused(400, "Conflicting options: --restart and --rm (AutoRemove)")
        labels[AUTO_REMOVE_LABEL] = "true"
    labels.update(_interactive(body))
    labels.update(option_labels(body, host))
    if given and given != fields["name"]:
        labels[naming.NAME_LABEL] = given
    if aliases is not None:
        labels[ALIASES_LABEL] = ",".join(aliases)
    if network is not None:
        fields["network"] = naming.dns_name(network)
        if fields["network"] != network:
            labels[naming.NETWORK_LABEL] = network
    if more := _more_networks(host, body, fields.get("network")):
        fields["networks"] = [fields.pop("network", "default"), *more]
    return fields


def _interactive(body: dict[str, Any]) -> dict[str, str]:
    """`-i` (OpenStdin, and StdinOnce with `run -i`) and `-t` (Tty) as the cell's labels, which
    the agent reads when it creates the container (`wire.exec.STDIN_LABEL`, `TTY_LABEL`)."""
    flags = {key: body.get(key) or False for key in ("OpenStdin", "StdinOnce", "Tty")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise Refused(400, f"{key} must be true or false")
    labels = {}
    if flags["OpenStdin"]:
        labels[STDIN_LABEL] = "once" if flags["StdinOnce"] else "open"
    if flags["Tty"]:
        labels[TTY_LABEL] = "true"
        size = console_size(body.get("HostConfig") or {})
        if size is not None:
            labels[TTY_SIZE_LABEL] = f"{size[0]}x{size[1]}"
    return labels


def console_size(body: dict[str, Any]) -> tuple[int, int] | None:
    """Docker's `ConsoleSize` ([height, width], the client's terminal) as (cols, rows); None
    when absent or zero (a client that is no terminal). Anything else is refused by name."""
    size = body.get("ConsoleSize")
    if size is None or size == [0, 0]:
        return None
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        and all(1 <= v <= MAX_DIMENSION for v in size)
    ):
        raise Refused(
            400,
            f"ConsoleSize must be [height, width], each 1-{MAX_DIMENSION} (or [0, 0]), "
            f"not {size!r}",
        )
    return int(size[1]), int(size[0])


#: The label that asks for an isolation class (`--label cellplane.isolation=sandbox`), the
#: one `cellplane.` label a container may carry; `--runtime runsc` says the same.
ISOLATION_LABEL = "cellplane.isolation"
#: Runtimes by their Docker name -> isolation class.
RUNTIMES = {"runc": "standard", "runsc": "sandbox"}


def _isolation(host: dict[str, Any], label: str | None) -> str | None:
    """The cell's isolation class from `--runtime` and the isolation label (None: the default,
    the tenant's minimum); an unknown runtime or class is refused as Docker refuses one."""
    runtime = host.get("Runtime") or None
    by_runtime = None
    if runtime is not None:
        by_runtime = RUNTIMES.get(str(runtime))
        if by_runtime is None:
            raise Refused(
                400,
                f"unknown or invalid runtime name: {runtime} (this endpoint runs "
                f"{', '.join(f'{r} (isolation {c})' for r, c in RUNTIMES.items())})",
            )
    if label is not None and label not in RUNTIMES.values():
        raise Refused(
            400,
            f"--label {ISOLATION_LABEL}={label}: unknown isolation class; one of "
            f"{', '.join(RUNTIMES.values())}",
        )
    if by_runtime is not None and label is not None and by_runtime != label:
        raise Refused(400, f"--runtime {runtime} and --label {ISOLATION_LABEL}={label} disagree")
    return by_runtime or label


def _strings(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Refused(400, f"{what} must be a list of strings")
    return list(value)
