"""The interactive exec protocol: channels, frames and control messages (docs/exec.md).

Shared by the SDK (`cellplane.client.exec`), the server (`api.routes_exec`,
`services.agent_proxy`) and the agent (`agent.exec_relay`); pure and standard library only, so
the agent stays light.

One exec session carries five channels, as Kubernetes' ``v5.channel.k8s.io`` does:

====== ======== =========================  ==================================================
byte   name     direction                  payload
====== ======== =========================  ==================================================
0      stdin    client -> cell             raw bytes
1      stdout   cell -> client             raw bytes (with a TTY: everything the TTY printed)
2      stderr   cell -> client             raw bytes (never with a TTY)
3      status   cell -> client, once, last ``{"exit_code": int | null, "error": str | null}``
4      resize   client -> cell             ``{"cols": int, "rows": int}``
255    close    client -> cell             one byte: the channel closed (only stdin, 0)
====== ======== =========================  ==================================================

Between the client and the server each WebSocket binary message is one frame: the channel byte,
then the payload. Between the server and the agent (a plain socket after an HTTP upgrade) a
frame is the channel byte, the payload's length (4 bytes, big-endian), then the payload.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ALIASES_LABEL",
    "CHANNEL_NAMES",
    "CLOSE",
    "MAX_PAYLOAD",
    "RESIZE",
    "STATUS",
    "STDERR",
    "STDIN",
    "STDIN_LABEL",
    "STDOUT",
    "SUBPROTOCOL",
    "TTY_LABEL",
    "TTY_SIZE_LABEL",
    "UPGRADE",
    "ExecStatus",
    "FrameReader",
    "ProtocolError",
    "close_stdin",
    "decode_message",
    "encode_message",
    "network_names",
    "pack",
    "parse_resize",
    "parse_status",
    "resize",
    "status",
]

STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2
STATUS: Final = 3
RESIZE: Final = 4
CLOSE: Final = 255
CHANNEL_NAMES: Final = {
    STDIN: "stdin",
    STDOUT: "stdout",
    STDERR: "stderr",
    STATUS: "status",
    RESIZE: "resize",
    CLOSE: "close",
}

#: The WebSocket subprotocol a client offers (and the server echoes) for this protocol.
SUBPROTOCOL: Final = "v1.exec.cellplane.dev"
#: The ``Upgrade`` token of the server -> agent hop.
UPGRADE: Final = "cellplane-exec/1"
#: The largest payload of one frame (1 MiB); a larger one is a protocol error.
MAX_PAYLOAD: Final = 1 << 20
#: The largest terminal dimension accepted in a resize.
MAX_DIMENSION: Final = 10_000
#: Cell labels asking for the main process's standard input to be kept open (value ``open``,
#: or ``once``: closed when the first attached client closes it) and for a TTY (``true``): set
#: by the Docker endpoint (`docker run -i/-t`), read by the agent when it creates the container.
#: The main process's streams are then attached with ``{"main": true}`` instead of a command.
STDIN_LABEL: Final = "cellplane.docker.stdin"
TTY_LABEL: Final = "cellplane.docker.tty"
#: The TTY's size from its start (``COLSxROWS``, Docker's `HostConfig.ConsoleSize`, which the
#: docker CLI sends with `run -t`): the agent sizes the terminal before the process runs, so a
#: process that asks at once (`stty size`) sees it, not the 0x0 of a terminal not resized yet.
TTY_SIZE_LABEL: Final = "cellplane.docker.tty-size"
#: A cell label of the Docker endpoint the agent reads too: the container's extra aliases on its
#: network (`--network-alias`, Compose's service name), comma-separated. With it the agent also
#: adds the container's short Docker id, as Docker does.
ALIASES_LABEL: Final = "cellplane.docker.aliases"


def network_names(cell_id: str, name: str, labels: Mapping[str, str] | None) -> list[str]:
    """A cell's names on each of its networks, on its own host and on the others: its name; for
    a container of the Docker endpoint that asked for aliases (`ALIASES_LABEL`), also its short
    Docker id (as Docker gives every container) and those aliases."""
    extra = (labels or {}).get(ALIASES_LABEL)
    if extra is None:
        return [name]
    short_id = hashlib.sha256(cell_id.encode()).hexdigest()[:12]
    return list(dict.fromkeys([name, short_id, *(a for a in extra.split(",") if a)]))


_HEADER = struct.Struct(">BI")


class ProtocolError(ValueError):
    """A frame or control message that breaks the protocol; the message says how."""


def _check_channel(channel: int) -> None:
    if channel not in CHANNEL_NAMES:
        raise ProtocolError(f"unknown channel {channel}")


def encode_message(channel: int, payload: bytes = b"") -> bytes:
    """One WebSocket message: the channel byte, then the payload."""
    _check_channel(channel)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    return bytes((channel,)) + payload


def decode_message(message: bytes) -> tuple[int, bytes]:
    """A WebSocket message back into (channel, payload)."""
    if not message:
        raise ProtocolError("empty frame: a frame starts with its channel byte")
    channel = message[0]
    _check_channel(channel)
    if len(message) - 1 > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(message) - 1} bytes is over {MAX_PAYLOAD}")
    return channel, bytes(message[1:])


def pack(channel: int, payload: bytes = b"") -> bytes:
    """One frame of the server <-> agent stream: channel, length, payload."""
    _check_channel(channel)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    return _HEADER.pack(channel, len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into frames made by :func:`pack`; feed it what the socket gave."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The frames completed by `data` (possibly none); the rest waits for more bytes."""
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= _HEADER.size:
            channel, length = _HEADER.unpack_from(self._buffer)
            _check_channel(channel)
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"payload of {length} bytes is over {MAX_PAYLOAD}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append((channel, bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)


@dataclass(frozen=True)
class ExecStatus:
    """How a session ended: the command's exit code, or an error (or both: a command that could
    not be started has exit code 127 or 126 and says why)."""

    exit_code: int | None
    error: str | None = None


def status(exit_code: int | None, error: str | None = None) -> bytes:
    """The payload of the status frame."""
    return json.dumps({"exit_code": exit_code, "error": error}).encode()


def parse_status(payload: bytes) -> ExecStatus:
    body = _json_object(payload, "status")
    code = body.get("exit_code")
    error = body.get("error")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise ProtocolError(f"status: exit_code must be an integer or null, not {code!r}")
    if error is not None and not isinstance(error, str):
        raise ProtocolError(f"status: error must be a string or null, not {error!r}")
    return ExecStatus(code, error)


def resize(cols: int, rows: int) -> bytes:
    """The payload of a resize frame."""
    return json.dumps({"cols": cols, "rows": rows}).encode()


def parse_resize(payload: bytes) -> tuple[int, int]:
    """A resize payload into (cols, rows), each 1-10000."""
    body = _json_object(payload, "resize")
    out: list[int] = []
    for key in ("cols", "rows"):
        value = body.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(f"resize: {key} must be an integer, not {value!r}")
        if not 1 <= value <= MAX_DIMENSION:
            raise ProtocolError(f"resize: {key} must be 1-{MAX_DIMENSION}, not {value}")
        out.append(value)
    return out[0], out[1]


def close_stdin() -> bytes:
    """The payload of the close frame that ends stdin."""
    return bytes((STDIN,))


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"{what}: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"{what}: must be a JSON object")
    return body
