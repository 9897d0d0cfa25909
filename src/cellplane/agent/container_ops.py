"""The agent's container operations for the Docker-compatible endpoint: copy files in and out,
stats, top, changes (diff), export, pause/unpause, a signal, new limits on the running container.

`AgentEndpoint` hands these requests over (``/cells/{id}/archive|stats|top|changes|export|pause|unpause|signal|limits``);
each is the engine's own operation through the driver (`drivers.podman_ops.ContainerOps`; a
signal through `drivers.base.Signals`, which the runc driver has too). Archives
and stats are streamed both ways (chunked answers; a PUT's body read in chunks as the engine takes
it), so the agent never holds a whole archive. Standard library only.

Errors are JSON ``{"error": ..., "kind": ...}``: 404 with kind ``container`` or ``path``, 400 for a
bad request, 409 when the engine refuses (a paused or stopped container...), 501 when this host's
engine has no such operation, 502 when the engine failed.
"""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

import structlog

from cellplane.drivers.base import Driver, Signals
from cellplane.drivers.errors import ContainerNotFound, DriverError, PermanentDriverError
from cellplane.drivers.podman_ops import STAT_HEADER, ContainerOps, PathNotFound

__all__ = ["GETS", "POSTS", "get", "head", "post", "put"]

log = structlog.get_logger("cellplane.agent.container_ops")

GETS = ("archive", "stats", "top", "changes", "export")
POSTS = ("pause", "unpause", "signal", "limits")
CHUNK = 1 << 16
SIGNAL_MAX = int(signal.SIGRTMAX)
KIND_HEADER = "X-Cellplane-Error-Kind"
# Go's os.FileMode bits, as the engine's path stat reports a mode.
_GO_MODE_DIR = 1 << 31
_GO_MODE_SYMLINK = 1 << 27


def _json(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    if "kind" in body:  # a HEAD's answer has no body: the kind goes in a header too
        h.send_header(KIND_HEADER, str(body["kind"]))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(data)


def _query(h: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(h.path).query).items()}


def _ops(h: BaseHTTPRequestHandler, driver: Driver) -> ContainerOps | None:
    if isinstance(driver, ContainerOps):
        return driver
    _json(h, 501, {"error": "this host's engine does not offer this operation", "kind": "engine"})
    return None


def _guarded(h: BaseHTTPRequestHandler, cell_id: str, action: Callable[[], None]) -> None:
    """Run `action`, answering the driver's refusals in the shape the module describes."""
    try:
        action()
    except ContainerNotFound:
        _json(h, 404, {"error": f"no container for cell {cell_id}", "kind": "container"})
    except PathNotFound as e:
        _json(h, 404, {"error": str(e), "kind": "path"})
    except PermanentDriverError as e:
        _json(h, 409, {"error": str(e), "kind": "engine"})
    except DriverError as e:
        _json(h, 502, {"error": str(e), "kind": "engine"})


def _stat_header(stat: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(stat).encode()).decode()


def _send_chunked(h: BaseHTTPRequestHandler, chunks: Iterator[bytes]) -> None:
    try:
        for chunk in chunks:
            if chunk:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        h.close_connection = True
    except DriverError as e:  # headers are out: cut the answer short, the client sees it
        log.warning("container stream failed", error=str(e))
        h.close_connection = True
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _path(h: BaseHTTPRequestHandler, q: dict[str, str]) -> str | None:
    path = q.get("path", "")
    if not path.startswith("/") or "\x00" in path:
        _json(h, 400, {"error": "path must be an absolute path in the container", "kind": "path"})
        return None
    return path


def head(h: BaseHTTPRequestHandler, driver: Driver, cell_id: str, what: str) -> None:
    if what != "archive":
        _json(h, 404, {"error": "not found"})
        return
    if (ops := _ops(h, driver)) is None or (path := _path(h, _query(h))) is None:
        return

    def run() -> None:
        stat = ops.archive_stat(f"cp-{cell_id}", path)
        h.send_response(200)
        h.send_header(STAT_HEADER, _stat_header(stat))
        h.send_header("Content-Length", "0")
        h.end_headers()

    _guarded(h, cell_id, run)


def get(h: BaseHTTPRequestHandler, driver: Driver, cell_id: str, what: str) -> None:
    if (ops := _ops(h, driver)) is None:
        return
    q = _query(h)
    name = f"cp-{cell_id}"
    if what == "archive":
        if (path := _path(h, q)) is None:
            return

        def archive() -> None:
            stat, chunks = ops.archive_get(name, path)
            h.send_response(200)
            h.send_header("Content-Type", "application/x-tar")
            h.send_header(STAT_HEADER, _stat_header(stat))
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            _send_chunked(h, chunks)

        _guarded(h, cell_id, archive)
    elif what == "export":

        def export() -> None:
            chunks = ops.export(name)
            h.send_response(200)
            h.send_header("Content-Type", "application/x-tar")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            _send_chunked(h, chunks)

        _guarded(h, cell_id, export)
    elif what == "stats":
        stream = q.get("stream", "true") == "true"

        def stats() -> None:
            samples = ops.stats(name, stream)
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            _send_chunked(h, (json.dumps(s).encode() + b"\n" for s in samples))

        _guarded(h, cell_id, stats)
    elif what == "changes":
        _guarded(h, cell_id, lambda: _json(h, 200, {"changes": ops.changes(name)}))
    else:
        _guarded(h, cell_id, lambda: _json(h, 200, ops.top(name, q.get("ps_args", ""))))


def _body_chunks(h: BaseHTTPRequestHandler, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = h.rfile.read(min(CHUNK, remaining))
        if not chunk:
            raise ConnectionError(f"the upload ended {remaining} bytes short")
        remaining -= len(chunk)
        yield chunk


def put(h: BaseHTTPRequestHandler, driver: Driver, cell_id: str, what: str) -> None:
    """Extract an uploaded tar (``Content-Length`` bytes) into ``path`` of the container."""
    raw_length = h.headers.get("Content-Length") or ""
    if what != "archive" or not raw_length.isdigit():
        h.close_connection = True
        _json(h, 400 if what == "archive" else 404, {"error": "an archive with Content-Length"})
        return
    if (ops := _ops(h, driver)) is None or (path := _path(h, q := _query(h))) is None:
        h.close_connection = True
        return
    no_overwrite = q.get("noOverwriteDirNonDir", "false") == "true"

    def run() -> None:
        # As Docker: the destination must exist and be a directory (the engine would make it).
        mode = int(ops.archive_stat(f"cp-{cell_id}", path).get("mode") or 0)
        if not mode & (_GO_MODE_DIR | _GO_MODE_SYMLINK):
            _json(h, 400, {"error": "extraction point is not a directory", "kind": "path"})
            return
        try:
            ops.archive_put(f"cp-{cell_id}", path, _body_chunks(h, int(raw_length)), no_overwrite)
        except ConnectionError:
            h.close_connection = True
            return
        _json(h, 200, {})

    # A refusal before the whole body was read leaves bytes on the connection: close it after.
    h.close_connection = True
    _guarded(h, cell_id, run)


def post(h: BaseHTTPRequestHandler, driver: Driver, cell_id: str, what: str, body: bytes) -> None:
    name = f"cp-{cell_id}"
    if what == "limits":
        try:
            data = json.loads(body or b"{}")
            cpu, memory_mb = float(data["cpu"]), int(data["memory_mb"])
        except (ValueError, KeyError, TypeError):
            _json(h, 400, {"error": 'body must be {"cpu": N, "memory_mb": N}'})
            return

        def limits() -> None:
            driver.apply_limits(name, cpu, memory_mb)
            _json(h, 200, {})

        _guarded(h, cell_id, limits)
        return
    if what == "signal":
        _signal(h, driver, cell_id, body)
        return
    if (ops := _ops(h, driver)) is None:
        return

    def freeze() -> None:
        (ops.pause if what == "pause" else ops.unpause)(name)
        _json(h, 200, {})

    _guarded(h, cell_id, freeze)


def _signal(h: BaseHTTPRequestHandler, driver: Driver, cell_id: str, body: bytes) -> None:
    """Send the signal of the body (``{"signal": N}``, 1 to SIGRTMAX) to the container."""
    try:
        number = json.loads(body or b"{}")["signal"]
    except (ValueError, KeyError, TypeError):
        number = None
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= SIGNAL_MAX:
        _json(h, 400, {"error": f'body must be {{"signal": N}}, N from 1 to {SIGNAL_MAX}'})
        return
    if not isinstance(driver, Signals):
        _json(h, 501, {"error": "this host's engine does not send signals", "kind": "engine"})
        return

    def send() -> None:
        driver.signal(f"cp-{cell_id}", number)
        _json(h, 200, {})

    _guarded(h, cell_id, send)
