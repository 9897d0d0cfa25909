"""The option parsers of `cellplane cell run|create`: pure functions that turn docker-like flags
into the CellCreate fields of docs/api.md; a bad flag is a usage error (exit 2) before anything is
sent. Re-exported by `cellplane.cli.cells`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

import typer

__all__ = [
    "LabelOpt",
    "Placement",
    "parse_env",
    "parse_memory",
    "parse_port",
    "parse_restart",
    "parse_selector",
    "parse_volume",
]

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b|i)?$", re.IGNORECASE)
_MEMORY_FACTOR_MB = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}


#: `--label KEY=VALUE`, repeated (a cell's, a network's, a volume's; `parse_env` reads them).
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="Label KEY=VALUE (repeat).")
]


def parse_env(values: list[str] | None, option: str) -> dict[str, str]:
    """`K=V` pairs into a dict; the value may itself contain '='."""
    result: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint=option)
        result[key] = val
    return result


def parse_port(value: str) -> dict[str, Any]:
    """`HOST:CONTAINER[/tcp|udp]` into a port mapping."""
    spec, _, protocol = value.partition("/")
    protocol = protocol.lower() or "tcp"
    host, sep, container = spec.partition(":")
    if protocol not in ("tcp", "udp") or not sep:
        raise typer.BadParameter(f"{value!r} is not HOST:CONTAINER[/udp]", param_hint="'-p'")
    ports = []
    for part in (host, container):
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise typer.BadParameter(
                f"{value!r}: {part!r} is not a port (1-65535)", param_hint="'-p'"
            )
        ports.append(int(part))
    return {"container_port": ports[1], "host_port": ports[0], "protocol": protocol}


def parse_volume(value: str) -> dict[str, Any]:
    """`VOLUME:/path[:ro|rw]` into a volume mount; `/host/path:/path[:ro|rw]` into a host path
    mount (the server allows only the operator's allowed host paths)."""
    parts = value.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop().lower()
    if len(parts) != 2 or mode not in ("ro", "rw") or not parts[0]:
        raise typer.BadParameter(
            f"{value!r} is not VOLUME:/path[:ro] or /host/path:/path[:ro]", param_hint="'-v'"
        )
    volume, path = parts
    if not path.startswith("/"):
        raise typer.BadParameter(f"{value!r}: the path must be absolute", param_hint="'-v'")
    key = "host_path" if volume.startswith("/") else "volume"
    return {key: volume, "path": path, "read_only": mode == "ro"}


def parse_restart(value: str) -> dict[str, Any]:
    """`never`, `always` or `on-failure[:N]` into a restart policy."""
    policy, sep, count = value.partition(":")
    policy = policy.lower()
    if policy in ("never", "always") and not sep:
        return {"policy": policy, "max_retries": None}
    if policy == "on-failure":
        if not sep:
            return {"policy": policy, "max_retries": None}
        if count.isdigit():
            return {"policy": policy, "max_retries": int(count)}
    raise typer.BadParameter(
        f"{value!r} is not never, always or on-failure[:N]", param_hint="'--restart'"
    )


def parse_memory(value: str) -> int:
    """A memory size into MB: `512` and `512M` are MB, `1G`/`1Gi` is 1024, `2048k` is 2."""
    match = _MEMORY.match(value.strip())
    if match is None:
        raise typer.BadParameter(
            f"{value!r} is not a size like 512M or 2G", param_hint="'--memory'"
        )
    megabytes = float(match.group(1)) * _MEMORY_FACTOR_MB[match.group(2).lower()]
    if megabytes < 1 or megabytes != int(megabytes):
        raise typer.BadParameter(
            f"{value!r} is not a whole number of MB (at least 1)", param_hint="'--memory'"
        )
    return int(megabytes)


class Placement(StrEnum):
    """Values of `cell run --placement`."""

    spread = "spread"
    binpack = "binpack"


def parse_selector(text: str, hint: str) -> dict[str, str]:
    """`app=web,tier=db` -> {"app": "web", "tier": "db"}; a clear error otherwise."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise typer.BadParameter(
                f"{text!r}: a selector is KEY=VALUE[,KEY=VALUE]", param_hint=hint
            )
        out[key.strip()] = value.strip()
    return out
