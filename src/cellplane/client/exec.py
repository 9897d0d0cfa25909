"""Interactive exec in a cell: `ExecSession`, the client end of `GET /v1/cells/{id}/exec`.

`CellsApi.exec_stream` opens it (a WebSocket, `websockets.sync.client`, with the client's
credentials and TLS settings); the protocol is :mod:`cellplane.wire.exec` (docs/exec.md).
Typical use::

    with client.exec_stream(cell_id, ["sh"], stdin=True) as session:
        session.send_stdin(b"echo hi\\n")
        session.close_stdin()
        for stream, data in session.output():
            ...  # stream is "stdout" or "stderr"
    session.status.exit_code  # 0

One thread reads (`output`); others may send stdin, close it and resize meanwhile.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_ws
from websockets.typing import Subprotocol

from cellplane.client.errors import CellplaneConnectionError, CellplaneError
from cellplane.wire import exec as wire
from cellplane.wire.exec import ExecStatus

__all__ = ["ExecSession", "ExecStatus", "connect"]


class ExecSession:
    """A command running in a cell with its streams attached (see the module docstring)."""

    def __init__(self, connection: ClientConnection, *, stdin: bool, tty: bool) -> None:
        self._ws = connection
        self._lock = threading.Lock()
        self.stdin = stdin
        self.tty = tty
        self._status: ExecStatus | None = None
        self._stdin_closed = not stdin

    def _send(self, channel: int, payload: bytes) -> None:
        try:
            with self._lock:
                self._ws.send(wire.encode_message(channel, payload))
        except ConnectionClosed:
            pass  # the session is over; `output` reports how it ended

    def send_stdin(self, data: bytes) -> None:
        """Send bytes to the command's stdin (the session was opened with `stdin=True`)."""
        if not self.stdin:
            raise CellplaneError("Usage", "this exec session was opened without stdin")
        for start in range(0, len(data), wire.MAX_PAYLOAD):
            self._send(wire.STDIN, data[start : start + wire.MAX_PAYLOAD])

    def close_stdin(self) -> None:
        """End the command's stdin (it reads EOF); its output keeps coming. Idempotent."""
        if self._stdin_closed:
            return
        self._stdin_closed = True
        self._send(wire.CLOSE, wire.close_stdin())

    def resize(self, cols: int, rows: int) -> None:
        """Set the TTY's window size (sessions opened with `tty=True`)."""
        self._send(wire.RESIZE, wire.resize(cols, rows))

    def output(self) -> Iterator[tuple[str, bytes]]:
        """("stdout" | "stderr", bytes) as the command prints them, until it ends; `status`
        then says how (exit code, or why it could not run)."""
        while self._status is None:
            try:
                message = self._ws.recv()
            except ConnectionClosed as exc:
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                self._status = ExecStatus(
                    None, f"the exec connection closed before the command ended: {reason or exc}"
                )
                return
            if isinstance(message, str):
                raise CellplaneError("Unexpected answer", "exec: a text frame from the server")
            try:
                channel, payload = wire.decode_message(message)
                if channel == wire.STATUS:
                    self._status = wire.parse_status(payload)
                    return
            except wire.ProtocolError as exc:
                raise CellplaneError("Unexpected answer", f"exec: {exc}") from exc
            if channel in (wire.STDOUT, wire.STDERR):
                yield wire.CHANNEL_NAMES[channel], payload

    @property
    def status(self) -> ExecStatus:
        """How the command ended; only once `output` is exhausted."""
        if self._status is None:
            raise CellplaneConnectionError("Exec not finished", "read `output()` to its end")
        return self._status

    @property
    def exit_code(self) -> int | None:
        return self.status.exit_code

    def close(self) -> None:
        """Leave the session (the command may go on running if it had not ended)."""
        self._ws.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    url: str,
    headers: dict[str, str],
    context: ssl.SSLContext | None,
    *,
    stdin: bool,
    tty: bool,
    timeout: float,
) -> ExecSession:
    """Open the WebSocket; a refusal (401, 404, 409, 422...) raises its CellplaneError."""
    try:
        connection = connect_ws(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(wire.SUBPROTOCOL)],
            ssl=context,
            open_timeout=timeout,
            compression=None,
            max_size=wire.MAX_PAYLOAD + 1,
            user_agent_header=headers.get("User-Agent", "cellplane-sdk"),
        )
    except InvalidStatus as exc:
        answer = exc.response
        response = httpx.Response(
            answer.status_code,
            headers=list(answer.headers.raw_items()),
            content=bytes(answer.body or b""),
        )
        raise CellplaneError.from_response(response) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise CellplaneConnectionError(
            "Connection failed", f"exec at {url.split('?')[0]}: {exc or type(exc).__name__}"
        ) from exc
    return ExecSession(connection, stdin=stdin, tty=tty)
