"""A cell (its API view, `services.views.cell_view`) as Docker shows a container: the `ps` summary,
`inspect`, states, `ps` filters. Pure: the time comes in as an argument.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from cellplane.dockerapi import healthchecks, naming
from cellplane.dockerapi.engine_opts import option_views
from cellplane.dockerapi.mapping import AUTO_REMOVE_LABEL, RESTART_LABEL, Refused, loads
from cellplane.wire.exec import ALIASES_LABEL, STDIN_LABEL, TTY_LABEL

__all__ = [
    "decode_filters",
    "docker_id",
    "docker_state",
    "has_run",
    "inspect",
    "matches",
    "parse_filters",
    "status_text",
    "summary",
]

_EPOCH_ZERO = "0001-01-01T00:00:00Z"
_RESTART_NAMES = {"never": "no", "always": "always", "on-failure": "on-failure"}
_FILTERS = {"id", "name", "label", "status", "health"}
_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def docker_id(cell_id: str) -> str:
    """A container's Docker id: 64 hex digits derived from its cell id (stable, and unique in
    its first 12, which is what `docker ps` shows)."""
    return hashlib.sha256(cell_id.encode()).hexdigest()


def docker_state(cell: dict[str, Any]) -> str:
    """created | running | paused | restarting | removing | exited | dead."""
    state, desired = cell["state"], cell["desired_state"]
    if desired == "DELETED" or state == "DELETING":
        return "removing"
    if state == "RUNNING":
        return "running"
    if state == "PAUSED":
        return "paused"
    if state in ("EXITED", "STOPPED", "FAILED"):
        if desired == "RUNNING" and state != "FAILED" and cell["restart"]["policy"] != "never":
            return "restarting" if _ever_started(cell) else "created"
        return "exited" if _ever_started(cell) or state != "FAILED" else "dead"
    # PENDING, SCHEDULED, CREATING, STARTING, STOPPING: not running yet (or any more)
    if state == "STOPPING":
        return "running"
    return "created"


#: States of a cell whose container exists but was never started: made by `docker create`
#: (CREATED), and made with its start on the way (STARTING: the agent saw it made, not run).
_UNSTARTED = ("CREATED", "STARTING")


def has_run(cell: dict[str, Any]) -> bool:
    """Whether the cell's container exists and has been started."""
    return bool(cell.get("container_id")) and cell["state"] not in _UNSTARTED


def _ever_started(cell: dict[str, Any]) -> bool:
    return has_run(cell) or any(
        e["type"] in ("started", "restarted") for e in cell.get("events") or []
    )


def _last(cell: dict[str, Any], *types: str) -> str | None:
    found = [e["at"] for e in cell.get("events") or [] if e["type"] in types]
    return found[-1] if found else None


def _parse(t: str | None) -> datetime | None:
    return datetime.fromisoformat(t) if t else None


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "Less than a second"
    s = max(0, int((now - then).total_seconds()))
    if s < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} second{'s' if s != 1 else ''}"
    if s < 3600:
        m = s // 60
        return "About a minute" if m == 1 else f"{m} minutes"
    if s < 48 * 3600:
        h = round(s / 3600)
        return "About an hour" if h == 1 else f"{h} hours"
    return f"{s // 86400} days"


def status_text(cell: dict[str, Any], now: datetime) -> str:
    """`docker ps`'s STATUS column: "Up 5 seconds", "Exited (0) 3 seconds ago", "Created"."""
    state = docker_state(cell)
    if state in ("running", "paused"):
        since = _parse(_last(cell, "started", "restarted") or cell["updated_at"])
        suffix = " (Paused)" if state == "paused" else healthchecks.ps_suffix(cell)
        return f"Up {_ago(now, since)}{suffix}"
    if state == "exited":
        code = cell.get("exit_code")
        code = 0 if code is None else code
        return f"Exited ({code}) {_ago(now, _parse(cell['updated_at']))} ago"
    return {"restarting": "Restarting", "removing": "Removal In Progress", "dead": "Dead"}.get(
        state, "Created"
    )


def _process(cell: dict[str, Any]) -> list[str]:
    entrypoint = cell.get("entrypoint") or []
    return [*entrypoint, *(cell.get("command") or [])]


def docker_name(cell: dict[str, Any]) -> str:
    """The container's name as the client gave it (`naming.NAME_LABEL`), or its cell name."""
    return str((cell.get("labels") or {}).get(naming.NAME_LABEL) or cell["name"])


def aliases(cell: dict[str, Any]) -> list[str]:
    """The container's names on its network, as the agent gives them (`agent.spec`)."""
    extra = (cell.get("labels") or {}).get(ALIASES_LABEL)
    if extra is None:
        return [cell["name"]]
    names = [cell["name"], docker_id(cell["id"])[:12], *(a for a in extra.split(",") if a)]
    return list(dict.fromkeys(names))


def _labels(cell: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (cell.get("labels") or {}).items() if not k.startswith("cellplane.")}


def _host_port(port: dict[str, Any], running: bool) -> int | None:
    """The host port a port is published on: the one asked for, or (`-p PORT`) the one the
    engine picked while the cell runs (its agent reports it)."""
    if port.get("host_port"):
        return int(port["host_port"])
    picked = port.get("picked_port")
    return int(picked) if picked and running else None


def _port_list(cell: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    running = docker_state(cell) in ("running", "paused")
    for p in cell.get("ports") or []:
        item: dict[str, Any] = {
            "PrivatePort": p["container_port"],
            "Type": p.get("protocol", "tcp"),
        }
        if host_port := _host_port(p, running):
            item.update(IP="0.0.0.0", PublicPort=host_port)
        out.append(item)
    return out


def _mounts(cell: dict[str, Any]) -> list[dict[str, Any]]:
    """The cell's mounts as Docker's `Mounts`: named volumes, and host paths as binds."""
    out = []
    for m in cell.get("volumes") or []:
        ro = bool(m.get("read_only"))
        if m.get("host_path") is not None:
            out.append(
                {
                    "Type": "bind",
                    "Source": m["host_path"],
                    "Destination": m["path"],
                    "Mode": "ro" if ro else "",
                    "RW": not ro,
                    "Propagation": "rprivate",
                }
            )
            continue
        out.append(
            {
                "Type": "volume",
                "Name": m["volume"],
                "Source": "",
                "Destination": m["path"],
                "Driver": "local",
                "Mode": "ro" if ro else "",
                "RW": not ro,
                "Propagation": "",
            }
        )
    return out


def _binds(cell: dict[str, Any]) -> list[str]:
    """`HostConfig.Binds`: `NAME:/path[:ro]` or `/host/path:/path[:ro]` per mount."""
    return [
        f"{m.get('host_path') or m.get('volume')}:{m['path']}{':ro' if m.get('read_only') else ''}"
        for m in cell.get("volumes") or []
    ]


def _created_unix(cell: dict[str, Any]) -> int:
    t = _parse(cell["created_at"])
    return int(t.timestamp()) if t else 0


def summary(cell: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One item of `GET /containers/json`."""
    return {
        "Id": docker_id(cell["id"]),
        "Names": [f"/{docker_name(cell)}"],
        "Image": cell["image"],
        "ImageID": cell["image"],
        "Command": " ".join(_process(cell)),
        "Created": _created_unix(cell),
        "Ports": _port_list(cell),
        "Labels": _labels(cell),
        "State": docker_state(cell),
        "Status": status_text(cell, now),
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": {}},
        "Mounts": _mounts(cell),
    }


def _restart_policy(cell: dict[str, Any]) -> dict[str, Any]:
    policy = cell["restart"]["policy"]
    name = (cell.get("labels") or {}).get(RESTART_LABEL) or _RESTART_NAMES.get(policy, "no")
    return {"Name": name, "MaximumRetryCount": cell["restart"].get("max_retries") or 0}


def inspect(cell: dict[str, Any], network: str) -> dict[str, Any]:
    """`GET /containers/{id}/json`: what the client set, reported back, and the state."""
    state = docker_state(cell)
    process = _process(cell)
    started = _last(cell, "started", "restarted")
    finished = cell["updated_at"] if state in ("exited", "dead") else None
    bindings = {
        f"{p['container_port']}/{p.get('protocol', 'tcp')}": [
            {"HostIp": "", "HostPort": str(p["host_port"]) if p.get("host_port") else ""}
        ]
        for p in cell.get("ports") or []
    }
    exposed: dict[str, dict[str, Any]] = {k: {} for k in bindings}
    labels = cell.get("labels") or {}
    stdin = labels.get(STDIN_LABEL)
    host_options, config_options = option_views(labels)
    return {
        "Id": docker_id(cell["id"]),
        "Created": cell["created_at"],
        "Path": process[0] if process else "",
        "Args": process[1:],
        "State": {
            "Status": state,
            "Running": state in ("running", "paused"),
            "Paused": state == "paused",
            "Restarting": state == "restarting",
            "OOMKilled": False,
            "Dead": state == "dead",
            "Pid": 0,
            "ExitCode": cell.get("exit_code") or 0,
            "Error": cell.get("message") or "" if cell["state"] == "FAILED" else "",
            "StartedAt": started or _EPOCH_ZERO,
            "FinishedAt": finished or _EPOCH_ZERO,
            **_health(cell, state == "running"),
        },
        "Image": cell["image"],
        "Name": f"/{docker_name(cell)}",
        "RestartCount": cell.get("restarts") or 0,
        "Driver": "cellplane",
        "Platform": "linux",
        "HostConfig": {
            "Binds": _binds(cell),
            "NetworkMode": "default",
            "PortBindings": bindings,
            "RestartPolicy": _restart_policy(cell),
            "Runtime": "runsc" if cell.get("isolation") == "sandbox" else "runc",
            "AutoRemove": (cell.get("labels") or {}).get(AUTO_REMOVE_LABEL) == "true",
            "Privileged": False,
            "NanoCpus": round(cell["cpu"] * 1e9),
            "Memory": cell["memory_mb"] * 1024 * 1024,
            "PidMode": "",
            "IpcMode": "private",
            # The agent's engine keeps every container's output in its own file (Compose shows
            # logs only of containers whose log driver it knows).
            "LogConfig": {"Type": "k8s-file", "Config": {}},
            **host_options,
        },
        "Mounts": _mounts(cell),
        "Config": {
            "Hostname": cell.get("hostname") or cell["name"],
            "Domainname": "",
            "User": cell.get("user") or "",
            "AttachStdin": stdin == "once",
            "AttachStdout": False,
            "AttachStderr": False,
            "ExposedPorts": exposed,
            "Tty": labels.get(TTY_LABEL) == "true",
            "OpenStdin": stdin in ("open", "once"),
            "StdinOnce": stdin == "once",
            "Env": [f"{k}={v}" for k, v in (cell.get("env") or {}).items()],
            "Cmd": cell.get("command"),
            "Image": cell["image"],
            "Volumes": {m["path"]: {} for m in cell.get("volumes") or []} or None,
            "WorkingDir": cell.get("workdir") or "",
            "Entrypoint": cell.get("entrypoint"),
            "Labels": _labels(cell),
            "StopTimeout": int(cell.get("stop_timeout") or 0),
            **config_options,
            **_healthcheck(cell),
        },
        "NetworkSettings": {
            "IPAddress": cell.get("address") or "",
            "Ports": {  # where they are published: a picked host port too
                f"{p['container_port']}/{p.get('protocol', 'tcp')}": (
                    [{"HostIp": "0.0.0.0", "HostPort": str(host_port)}]
                    if (host_port := _host_port(p, state in ("running", "paused")))
                    else None
                )
                for p in cell.get("ports") or []
            },
            "Networks": {
                labels.get(naming.NETWORK_LABEL, network): {
                    "IPAddress": cell.get("address") or "",
                    "Aliases": aliases(cell),
                }
            },
        },
        # Not Docker's: the cell behind the container, for `cellplane cell show`.
        "CellplaneCell": cell["id"],
    }


def _health(cell: dict[str, Any], running: bool) -> dict[str, Any]:
    health = healthchecks.health_of(cell, running)
    return {} if health is None else {"Health": health}


def _healthcheck(cell: dict[str, Any]) -> dict[str, Any]:
    check = healthchecks.config_healthcheck(cell.get("healthcheck"))
    return {} if check is None else {"Healthcheck": check}


def decode_filters(
    raw: str | None, known: set[str] | frozenset[str], scope: str = ""
) -> dict[str, list[str]]:
    """A `filters` query parameter as Docker sends it (`{"label": ["a=b"]}`, or the old
    `{"label": {"a=b": true}}`): each key one of `known` (`scope`, e.g. " for events", names
    the listing in the refusal), each value a list of strings."""
    if not raw:
        return {}
    try:
        data = loads(raw)
    except ValueError as exc:
        raise Refused(400, f"invalid filters: {exc}") from exc
    if not isinstance(data, dict):
        raise Refused(400, "invalid filters: expected a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if key not in known:
            raise Refused(
                400, f"invalid filter '{key}'{scope} (supported: {', '.join(sorted(known))})"
            )
        if isinstance(values, dict):
            values = [k for k, on in values.items() if on]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise Refused(400, f"invalid filter '{key}': expected a list of strings")
        out[key] = values
    return out


def parse_filters(raw: str | None) -> dict[str, list[str]]:
    """The `filters` of `GET /containers/json`."""
    out = decode_filters(raw, _FILTERS)
    for key, known in (("status", _STATUSES), ("health", healthchecks.HEALTH_FILTERS)):
        bad = [v for v in out.get(key, []) if v not in known]
        if bad:
            raise Refused(
                400, f"invalid filter '{key}={bad[0]}' (one of {', '.join(sorted(known))})"
            )
    return out


def _name_matches(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, f"/{name}") is not None
    except re.error as exc:
        raise Refused(400, f"invalid filter 'name={pattern}': {exc}") from exc


def matches(cell: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    """Docker's rule: every filter key must match; within a key, any of its values (labels: all).
    `name` is a regular expression searched in `/name`, `id` a prefix of the id."""
    ids = filters.get("id")
    if ids and not any(docker_id(cell["id"]).startswith(v) or cell["id"] == v for v in ids):
        return False
    names = filters.get("name")
    if names and not any(_name_matches(v, cell["name"]) for v in names):
        return False
    statuses = filters.get("status")
    if statuses and docker_state(cell) not in statuses:
        return False
    health = filters.get("health")
    if health and healthchecks.status_of(cell) not in health:
        return False
    labels = cell.get("labels") or {}
    for item in filters.get("label", []):
        k, sep, v = item.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True
