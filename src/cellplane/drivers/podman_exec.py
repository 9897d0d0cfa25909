"""Interactive exec on a Docker-API engine: a hijacked exec stream as an `ExecSession`.

`PodmanDriver.exec_open` creates the exec and starts it with the connection upgraded to a raw
socket (``Connection: Upgrade``, ``Upgrade: tcp``); without a TTY the engine multiplexes stdout
and stderr on it in 8-byte-headed frames, which :class:`StreamDemux` undoes. With a TTY the
initial window size goes with the start request (podman reads ``h``/``w``, Docker
``ConsoleSize``), so a command that asks for its size at once sees the client's.

A command that cannot be started (not found, not executable) is reported by podman as an
``Error: runc: exec failed: ...`` line on the stream and exit code 127 or 126, followed by a
connection-reset line: :func:`exec_failure` recognises the first, and the session then reports
the failure (``exec failed: "nosuch": executable file not found in $PATH``) instead of the
engine's lines.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from collections import deque
from typing import Any

import docker.errors
import requests
import structlog

from cellplane.drivers import errors
from cellplane.drivers.podman_bodies import LIBPOD_PREFIX

__all__ = [
    "PodmanAttachSession",
    "PodmanExecSession",
    "StreamDemux",
    "exec_failure",
    "size_tty",
    "start_attach",
    "start_exec",
]

log = structlog.get_logger("cellplane.drivers.podman")

_FRAME = struct.Struct(">BxxxI")
# What the runtime says when the command cannot be started; the cell's process never ran.
_FAILURE = re.compile(rb"^Error: (?:runc|crun|OCI runtime)[^\n]*?exec failed: (?P<rest>[^\n]*)")
_REASON = re.compile(r'exec: "(?P<cmd>(?:[^"\\]|\\.)*)": (?P<why>.*?)(?:: OCI .*)?$')
# Exit codes a shell gives a command it could not run (not executable / not found).
_CANNOT_RUN = frozenset({126, 127})
_HOLD_LIMIT = 64 * 1024


def exec_failure(output: bytes) -> str | None:
    """The message for an engine's "could not start the command" output, or None."""
    m = _FAILURE.match(output)
    if m is None:
        return None
    rest = m.group("rest").decode("utf-8", "replace").strip()
    reason = _REASON.search(rest)
    if reason is not None:
        return f'exec failed: "{reason.group("cmd")}": {reason.group("why")}'
    return f"exec failed: {rest}"


class StreamDemux:
    """The engine's multiplexed exec stream (no TTY) into (stream, bytes): 1 stdout, 2 stderr."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out: list[tuple[int, bytes]] = []
        while len(self._buffer) >= _FRAME.size:
            stream, length = _FRAME.unpack_from(self._buffer)
            end = _FRAME.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_FRAME.size : end])
            del self._buffer[:end]
            if payload:
                # Stream 0 (stdin echoed) does not occur; anything else is shown as stderr.
                out.append((1 if stream == 1 else 2, payload))
        return out


def size_tty(api: Any, container_id: str, size: tuple[int, int]) -> None:
    """Initialise a created container with a TTY (the runtime makes the TTY; the process waits
    for the start) and size it (cols, rows), so that the process sees the size from its start:
    a `stty size` run at once answers it, not the 0x0 of a TTY the client's first resize has not
    reached yet. Podman has no console size at create (Docker's `HostConfig.ConsoleSize`), and
    its resize applies from init on. A failure leaves the TTY unsized, as before: logged, and
    the start that follows reports the runtime's own failure, if any."""
    try:
        response = api.post(f"{api.base_url}{LIBPOD_PREFIX}/containers/{container_id}/init")
        api._raise_for_status(response)
        api.resize(container_id, height=size[1], width=size[0])
    except (docker.errors.APIError, requests.RequestException) as exc:
        log.warning("tty size not applied", container=container_id, error=str(exc))


def start_exec(
    api: Any,
    container_id: str,
    command: list[str],
    *,
    stdin: bool,
    tty: bool,
    size: tuple[int, int] | None,
    user: str | None = None,
    env: list[str] | None = None,
    workdir: str | None = None,
) -> PodmanExecSession:
    """Create and start an exec; the session reads and writes its hijacked socket. `user`,
    `env` ("K=V") and `workdir` default to the container's."""
    created = api.exec_create(
        container_id,
        command,
        stdin=stdin,
        tty=tty,
        stdout=True,
        stderr=True,
        user=user or "",
        environment=env or None,
        workdir=workdir or None,
    )
    exec_id = str(created["Id"])
    body: dict[str, Any] = {"Detach": False, "Tty": tty}
    if tty and size is not None:
        cols, rows = size
        body.update({"h": rows, "w": cols, "ConsoleSize": [rows, cols]})
    response = api._post_json(
        api._url("/exec/{0}/start", exec_id),
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        data=body,
        stream=True,
    )
    raw = api._get_raw_response_socket(response)
    sock: socket.socket = getattr(raw, "_sock", raw)
    # The client's read timeout does not apply: an interactive shell may stay quiet for hours.
    sock.settimeout(None)
    return PodmanExecSession(api, exec_id, sock, response, tty=tty)


class PodmanExecSession:
    """One running exec; `read` until None, then `wait` for its end. See `base.ExecSession`."""

    def __init__(
        self, api: Any, exec_id: str, sock: socket.socket, response: Any, *, tty: bool
    ) -> None:
        self._api = api
        self.exec_id = exec_id
        self._sock = sock
        self._response = response  # keeps the upgraded connection alive
        self._demux = None if tty else StreamDemux()
        self._pending: deque[tuple[int, bytes]] = deque()
        self._first = True
        self._failure: str | None = None
        self._ended = False

    def _receive(self) -> list[tuple[int, bytes]] | None:
        try:
            data = self._sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            return None
        return [(1, data)] if self._demux is None else self._demux.feed(data)

    def read(self) -> tuple[int, bytes] | None:
        while not self._pending:
            if self._ended:
                return None
            chunks = self._receive()
            if chunks is None:
                self._ended = True
                return None
            if self._first and chunks:
                self._first = False
                message = exec_failure(chunks[0][1])
                if message is not None:
                    chunks = self._hold(chunks, message)
            self._pending.extend(chunks)
        return self._pending.popleft()

    def _hold(self, held: list[tuple[int, bytes]], message: str) -> list[tuple[int, bytes]]:
        """After a could-not-start line: to the end, then the failure if the exit code says so;
        otherwise (the command's own output looked like one) everything read, as it came."""
        size = sum(len(c) for _, c in held)
        while size <= _HOLD_LIMIT:
            more = self._receive()
            if more is None:
                self._ended = True
                if self.exit_code() in _CANNOT_RUN:
                    self._failure = message
                    return []
                break
            held.extend(more)
            size += sum(len(c) for _, c in more)
        return held

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def resize(self, cols: int, rows: int) -> None:
        try:
            self._api.exec_resize(self.exec_id, height=rows, width=cols)
        except Exception as exc:  # the SDK's and transport's errors alike
            raise errors.PermanentDriverError(f"cannot resize the exec's TTY: {exc}") from exc

    def exit_code(self, timeout: float = 5.0) -> int | None:
        """The command's exit code once it has ended (None if the engine does not say)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self._api.exec_inspect(self.exec_id)
            except Exception as exc:  # the SDK's and transport's errors alike
                raise errors.TemporaryDriverError(f"cannot read the exec's end: {exc}") from exc
            if not info.get("Running") or time.monotonic() >= deadline:
                code = info.get("ExitCode")
                return int(code) if isinstance(code, int) else None
            time.sleep(0.05)

    @property
    def failure(self) -> str | None:
        """Why the command could not be started, once `read` has returned None."""
        return self._failure

    def close(self) -> None:
        # shutdown first: it wakes a reader blocked in recv on another thread; close alone
        # may leave it waiting.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self._sock.close()
        finally:
            self._response.close()


def start_attach(api: Any, container_id: str, *, stdin: bool, logs: bool) -> PodmanAttachSession:
    """Attach to a container's main process (`POST /containers/{id}/attach`, hijacked): its
    output (multiplexed unless the container has a TTY), and its stdin with `stdin`. With `logs`
    the engine first replays what the process printed since it started (an attach that comes
    after the start, as the Docker endpoint's does, misses nothing)."""
    tty = bool((api.inspect_container(container_id).get("Config") or {}).get("Tty"))
    params = {"stream": 1, "stdout": 1, "stderr": 1, "stdin": int(stdin), "logs": int(logs)}
    response = api._post(
        api._url("/containers/{0}/attach", container_id),
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        params=params,
        stream=True,
    )
    api._raise_for_status(response)
    raw = api._get_raw_response_socket(response)
    sock: socket.socket = getattr(raw, "_sock", raw)
    sock.settimeout(None)  # a quiet process may stay quiet for hours
    return PodmanAttachSession(api, container_id, sock, response, tty=tty)


class PodmanAttachSession(PodmanExecSession):
    """The attached main process of a container: as an exec session, but resized through the
    container and ended with the container (its exit code, None while it runs)."""

    def __init__(
        self, api: Any, container_id: str, sock: socket.socket, response: Any, *, tty: bool
    ) -> None:
        super().__init__(api, container_id, sock, response, tty=tty)
        self._first = False  # the process's own output: never an exec's "could not start"

    def resize(self, cols: int, rows: int) -> None:
        try:
            self._api.resize(self.exec_id, height=rows, width=cols)
        except Exception as exc:  # the SDK's and transport's errors alike
            raise errors.PermanentDriverError(f"cannot resize the container's TTY: {exc}") from exc

    def exit_code(self, timeout: float = 5.0) -> int | None:
        try:
            state = self._api.inspect_container(self.exec_id).get("State") or {}
        except Exception as exc:  # the SDK's and transport's errors alike
            raise errors.TemporaryDriverError(f"cannot read the container's state: {exc}") from exc
        code = state.get("ExitCode")
        return None if state.get("Running") or not isinstance(code, int) else code
