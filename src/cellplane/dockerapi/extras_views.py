"""Pure parts of the Docker endpoint's extra container routes (`dockerapi.extras`): the archive's
path-stat header, the checks on an uploaded tar and its destination, the stats sample as Docker
shows it, the reading of `docker update`'s body and of `docker kill`'s signal. No I/O.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import signal
from typing import Any

from cellplane.dockerapi.refusal import Refused

__all__ = [
    "STAT_HEADER",
    "TarChecker",
    "check_container_path",
    "kill_signal",
    "path_stat_header",
    "read_only_refusal",
    "stats_view",
    "update_fields",
]

STAT_HEADER = "X-Docker-Container-Path-Stat"
_BLOCK = 512
#: `docker update` fields that are applied; every other one must be absent, zero or empty.
_APPLIED = {"NanoCpus", "CpuQuota", "CpuPeriod", "Memory", "MemorySwap", "RestartPolicy"}
#: The signals a container may be sent (Linux: 1 to SIGRTMAX).
_SIGNAL_MAX = int(signal.SIGRTMAX)
_REALTIME = re.compile(r"RT(MIN\+|MAX-)(\d+)")


def kill_signal(raw: str) -> int:
    """The signal `docker kill --signal` names, as dockerd reads it: empty for SIGKILL, a number,
    or a name with or without `SIG` in any case (`hup`, `SIGUSR1`, `RTMIN+3`). Docker's 400
    (`Invalid signal: ...`) for anything else."""
    text = raw.strip().upper().removeprefix("SIG")
    number: int | None = None
    if not raw:
        number = int(signal.SIGKILL)
    elif text.isdigit():
        number = int(text)
    elif m := _REALTIME.fullmatch(text):  # RTMIN+1..15 and RTMAX-14..1, as dockerd names them
        offset, low = int(m.group(2)), m.group(1) == "MIN+"
        if 1 <= offset <= (15 if low else 14):
            number = int(signal.SIGRTMIN) + offset if low else _SIGNAL_MAX - offset
    elif text.isalnum():
        found = getattr(signal.Signals, f"SIG{text}", None)
        number = int(found) if isinstance(found, signal.Signals) else None
    if number is None or not 1 <= number <= _SIGNAL_MAX:
        raise Refused(400, f"Invalid signal: {raw}")
    return number


def path_stat_header(stat: dict[str, Any]) -> str:
    """`X-Docker-Container-Path-Stat`: base64 of the JSON {name, size, mode, mtime, linkTarget}."""
    view = {
        "name": str(stat.get("name") or ""),
        "size": int(stat.get("size") or 0),
        "mode": int(stat.get("mode") or 0),
        "mtime": str(stat.get("mtime") or "0001-01-01T00:00:00Z"),
        "linkTarget": str(stat.get("linkTarget") or ""),
    }
    return base64.b64encode(json.dumps(view).encode()).decode()


def check_container_path(path: str) -> str:
    """The `path` query parameter: an absolute path in the container (Docker resolves relative
    ones against the working directory; this endpoint asks for absolute ones)."""
    if not path:
        raise Refused(400, "path is required: an absolute path in the container")
    if "\x00" in path:
        raise Refused(400, "path must not contain NUL bytes")
    if not path.startswith("/"):
        raise Refused(400, f"path {path!r} is not absolute: give the full path in the container")
    return path


def read_only_refusal(cell: dict[str, Any], path: str) -> Refused | None:
    """Docker's refusal of a copy into a read-only root filesystem (a writable volume is fine)."""
    if not cell.get("read_only"):
        return None
    target = posixpath.normpath(path)
    for m in cell.get("volumes") or []:
        mount = posixpath.normpath(m["path"])
        if not m.get("read_only") and (target == mount or target.startswith(mount + "/")):
            return None
    return Refused(403, "container rootfs is marked read-only")


def _escapes(name: str) -> bool:
    """Whether a member name leaves the directory it is extracted into."""
    if name.startswith("/"):
        return True
    depth = 0
    for part in name.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _field(header: bytes, start: int, size: int) -> str:
    return header[start : start + size].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _octal(header: bytes, start: int, size: int) -> int:
    raw = header[start : start + size]
    if raw[:1] == b"\x80":  # GNU base-256 for large sizes
        return int.from_bytes(raw[1:], "big")
    text = raw.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError as exc:
        raise ValueError("not a tar archive (a header's size is not a number)") from exc


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        length = int(data[pos:space] or b"0")
        if length <= 0:
            break
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarChecker:
    """Reads a tar as it arrives (any chunking) and raises ValueError, naming the member, at the
    first one whose path or hard-link target leaves the destination (absolute, or `..` above it).
    Symbolic links are extracted inside the container, as Docker does. `members` counts them."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # payload bytes (with padding) still to pass over
        self._collect: tuple[str, int] | None = None  # (kind, size) of a long-name/pax payload
        self._next_name: str | None = None
        self._next_link: str | None = None
        self._ended = False
        self.members = 0

    def feed(self, data: bytes) -> None:
        if self._ended:
            return
        self._buffer += data
        while not self._ended:
            if self._skip:
                n = min(self._skip, len(self._buffer))
                del self._buffer[:n]
                self._skip -= n
                if self._skip:
                    return
            if self._collect is not None:
                kind, size = self._collect
                padded = size + (-size % _BLOCK)
                if len(self._buffer) < padded:
                    return
                self._extended(kind, bytes(self._buffer[:size]))
                del self._buffer[:padded]
                self._collect = None
                continue
            if len(self._buffer) < _BLOCK:
                return
            header = bytes(self._buffer[:_BLOCK])
            del self._buffer[:_BLOCK]
            if header == b"\x00" * _BLOCK:
                self._ended = True
                return
            self._header(header)

    def _extended(self, kind: str, payload: bytes) -> None:
        if kind in ("L", "K"):
            text = payload.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            if kind == "L":
                self._next_name = text
            else:
                self._next_link = text
        else:
            pax = _pax(payload)
            self._next_name = pax.get("path", self._next_name)
            self._next_link = pax.get("linkpath", self._next_link)

    def _header(self, header: bytes) -> None:
        if header[257:262] != b"ustar" and not header[:100].strip(b"\x00"):
            raise ValueError("not a tar archive")
        size = _octal(header, 124, 12)
        kind = chr(header[156]) if header[156] else "0"
        if kind in ("L", "K", "x"):
            if size > 1 << 20:
                raise ValueError("not a usable tar archive (an extended header over 1 MiB)")
            self._collect = (kind, size)
            return
        if kind == "g":  # global pax header: nothing about paths here
            self._skip = size + (-size % _BLOCK)
            return
        name = _field(header, 0, 100)
        prefix = _field(header, 345, 155) if header[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        name = self._next_name or name
        link = self._next_link or _field(header, 157, 100)
        self._next_name = self._next_link = None
        if _escapes(name):
            raise ValueError(f"the archive's member {name!r} leaves the destination directory")
        if kind == "1" and _escapes(link):
            raise ValueError(f"the archive's hard link {name!r} points outside it ({link!r})")
        self.members += 1
        if kind in ("0", "7", "\x00"):
            self._skip = size + (-size % _BLOCK)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def stats_view(
    sample: dict[str, Any], container_id: str, name: str, memory_limit: int
) -> dict[str, Any]:
    """An engine's stats sample as Docker's `GET /containers/{id}/stats` shows it, with the
    container's endpoint id and name, and the cell's memory limit (`memory_limit`, 0: the
    engine's)."""
    cpu = sample.get("cpu_stats") or {}
    precpu = sample.get("precpu_stats") or {}

    def cpu_view(s: dict[str, Any]) -> dict[str, Any]:
        usage = s.get("cpu_usage") or {}
        return {
            "cpu_usage": {
                "total_usage": _int(usage.get("total_usage")),
                "percpu_usage": usage.get("percpu_usage") or [],
                "usage_in_kernelmode": _int(usage.get("usage_in_kernelmode")),
                "usage_in_usermode": _int(usage.get("usage_in_usermode")),
            },
            "system_cpu_usage": _int(s.get("system_cpu_usage")),
            "online_cpus": _int(s.get("online_cpus")),
            "throttling_data": s.get("throttling_data")
            or {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        }

    mem = sample.get("memory_stats") or {}
    # The cell's limit is the one its agent set on the cgroup; podman 4.3 goes on reporting the
    # limit the container was created with after an update. The engine's only without one.
    limit = memory_limit or _int(mem.get("limit"))
    pids = sample.get("pids_stats") or {}
    networks = sample.get("networks")
    return {
        "id": container_id,
        "name": f"/{name}",
        "read": str(sample.get("read") or "0001-01-01T00:00:00Z"),
        "preread": str(sample.get("preread") or "0001-01-01T00:00:00Z"),
        "pids_stats": {"current": _int(pids.get("current")), "limit": _int(pids.get("limit"))},
        "blkio_stats": sample.get("blkio_stats") or {"io_service_bytes_recursive": None},
        "num_procs": _int(sample.get("num_procs")),
        "storage_stats": sample.get("storage_stats") or {},
        "cpu_stats": cpu_view(cpu),
        "precpu_stats": cpu_view(precpu),
        "memory_stats": {
            "usage": _int(mem.get("usage")),
            "max_usage": _int(mem.get("max_usage")),
            "stats": mem.get("stats") or {},
            "limit": limit,
        },
        "networks": networks if isinstance(networks, dict) else {},
    }


def _set(value: Any) -> bool:
    return value not in (None, 0, "", [], {}, False)


def update_fields(body: Any) -> dict[str, Any]:
    """`POST /containers/{id}/update`'s body into the cell's new {cpu, memory_mb, restart}
    (only those given); any other field set is refused, naming it."""
    if not isinstance(body, dict):
        raise Refused(400, "the update body must be a JSON object")
    other = sorted(k for k, v in body.items() if k not in _APPLIED and _set(v))
    if other:
        raise Refused(400, f"update of {', '.join(other)} is not supported on this endpoint yet")
    out: dict[str, Any] = {}
    nano, quota = _int(body.get("NanoCpus")), _int(body.get("CpuQuota"))
    period = _int(body.get("CpuPeriod")) or 100_000
    if nano < 0 or quota < 0 or _int(body.get("Memory")) < 0:
        raise Refused(400, "update: limits must not be negative")
    if nano:
        out["cpu"] = nano / 1e9
    elif quota:
        out["cpu"] = quota / period
    memory = _int(body.get("Memory"))
    if memory:
        if memory < 6 * 1024 * 1024:
            raise Refused(400, "Minimum memory limit allowed is 6MB")
        out["memory_mb"] = -(-memory // (1024 * 1024))
    swap = _int(body.get("MemorySwap"))
    if swap not in (0, -1) and swap != memory:
        raise Refused(400, "update --memory-swap is not supported on this endpoint yet")
    policy = body.get("RestartPolicy")
    if isinstance(policy, dict) and policy.get("Name"):
        out["restart"] = {
            "Name": str(policy["Name"]),
            "MaximumRetryCount": _int(policy.get("MaximumRetryCount")),
        }
    return out
