"""The agent's half of an interactive exec: frames from the server <-> the engine's exec session.

`AgentEndpoint` answers ``POST /cells/{id}/attach`` (``Upgrade: cellplane-exec/1``) with 101,
then hands the connection to :func:`relay`: this thread reads the server's frames (stdin, resize,
close of stdin) and applies them to the session; a second thread reads the command's output and
sends it as stdout/stderr frames, then one status frame (the exit code, or why the command could
not be started), and closes. Frames are those of :mod:`cellplane.wire.exec` (channel, length,
payload). Standard library only: the agent stays light.
"""

from __future__ import annotations

import contextlib
import io
import socket
import ssl
import threading
from typing import Any

import structlog

from cellplane.drivers.base import Driver, ExecSession
from cellplane.drivers.errors import DriverError
from cellplane.wire import exec as wire

__all__ = ["open_session", "parse_attach", "relay"]

log = structlog.get_logger("cellplane.agent.exec")


def parse_attach(body: object) -> tuple[list[str], bool, bool, tuple[int, int] | None]:
    """An attach request's body into (command, stdin, tty, size); ValueError naming the field."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    command = body.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise ValueError("command must be a non-empty list of strings")
    flags = []
    for key in ("stdin", "tty"):
        value = body.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        flags.append(value)
    size = body.get("size")
    if size is not None:
        if not isinstance(size, list) or len(size) != 2:
            raise ValueError("size must be [cols, rows]")
        size = wire.parse_resize(wire.resize(size[0], size[1]))
    return command, flags[0], flags[1], size


def open_session(driver: Driver, container: str, body: object) -> ExecSession:
    """The session an attach request asks for: a new command (`parse_attach`), or with
    ``{"main": true, "stdin": bool, "logs": bool}`` the container's main process (Docker's
    attach). ValueError naming a bad field; the driver's errors as they are."""
    if isinstance(body, dict) and body.get("main") is True:
        flags = [body.get(key, False) for key in ("stdin", "logs")]
        if not all(isinstance(flag, bool) for flag in flags):
            raise ValueError("stdin and logs must be true or false")
        return driver.attach_open(container, stdin=flags[0], logs=flags[1])
    command, stdin, tty, size = parse_attach(body)
    return driver.exec_open(container, command, stdin=stdin, tty=tty, size=size, **_process(body))


def _process(body: object) -> dict[str, Any]:
    """The optional `user`, `env` (["K=V"]) and `workdir` of the exec; ValueError naming one."""
    out: dict[str, Any] = {}
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    for key in ("user", "workdir"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str) or not value or "\0" in value:
                raise ValueError(f"{key} must be a non-empty string")
            out[key] = value
    env = body.get("env")
    if env is not None:
        if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
            raise ValueError('env must be a list of "KEY=VALUE" strings')
        out["env"] = list(env)
    return out


def _send(sock: socket.socket, lock: threading.Lock, channel: int, payload: bytes) -> bool:
    try:
        with lock:
            sock.sendall(wire.pack(channel, payload))
    except OSError:
        return False
    return True


def _pump_output(session: ExecSession, sock: socket.socket, lock: threading.Lock) -> None:
    """The command's output to the server, then its status; then the connection's write side
    is shut, which tells the server the session is over."""
    try:
        while (chunk := session.read()) is not None:
            channel, data = chunk
            if not _send(sock, lock, wire.STDOUT if channel == 1 else wire.STDERR, data):
                return
        failure = session.failure
        try:
            code = session.exit_code()
        except DriverError as exc:
            _send(sock, lock, wire.STATUS, wire.status(None, str(exc)))
            return
        _send(sock, lock, wire.STATUS, wire.status(code, failure))
    except Exception as exc:  # a stream that broke mid-way: say so instead of resetting
        log.warning("exec output failed", error=str(exc))
        _send(sock, lock, wire.STATUS, wire.status(None, f"exec stream failed: {exc}"))
    finally:
        # Over TLS a half-close would end the TLS layer for reading too (the server stops at the
        # status anyway, and closes).
        if not isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)


def _apply(session: ExecSession, channel: int, payload: bytes) -> None:
    if channel == wire.STDIN:
        # A command that no longer reads (it ended, or closed stdin): its output goes on.
        with contextlib.suppress(OSError):
            session.write(payload)
    elif channel == wire.RESIZE:
        cols, rows = wire.parse_resize(payload)
        try:
            session.resize(cols, rows)
        except DriverError as exc:  # the command may just have ended; not worth ending for
            log.info("exec resize failed", error=str(exc))
    elif channel == wire.CLOSE:
        if payload != wire.close_stdin():
            raise wire.ProtocolError("close: only stdin (channel 0) can be closed")
        session.close_stdin()
    else:
        raise wire.ProtocolError(f"channel {channel} is not sent by a client")


def relay(session: ExecSession, incoming: io.BufferedIOBase, sock: socket.socket) -> None:
    """Run one session to its end on an upgraded connection (`incoming` reads it, buffered)."""
    lock = threading.Lock()
    output = threading.Thread(
        target=_pump_output, args=(session, sock, lock), name="cp-exec-out", daemon=True
    )
    output.start()
    frames = wire.FrameReader()
    try:
        while True:
            data = incoming.read1(65536)
            if not data:
                break
            for channel, payload in frames.feed(data):
                _apply(session, channel, payload)
    except wire.ProtocolError as exc:
        log.warning("exec protocol error", error=str(exc))
    except OSError:
        pass  # the server went away, or the command's stdin is gone
    finally:
        # The server closes its side once it has the status, or because its client left:
        # either way the session is over for us (the command itself may go on running).
        session.close()
        output.join(timeout=10)
