"""The engine's exec stream: the multiplexed frames of a non-TTY exec, and the engine's
"could not start the command" output told from the command's own."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellplane.drivers.podman_exec import PodmanExecSession, StreamDemux, exec_failure

NOT_FOUND = (
    b'Error: runc: exec failed: unable to start container process: exec: "nosuch": executable '
    b"file not found in $PATH: OCI runtime attempted to invoke a command that was not found\n"
)
DENIED = (
    b'Error: runc: exec failed: unable to start container process: exec: "/etc/passwd": '
    b"permission denied: OCI permission denied\n"
)
RESET = b"Error: read unixpacket @->/proc/self/fd/15/attach: read: connection reset by peer\n"


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


@given(
    st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(min_size=1, max_size=300))),
    st.integers(1, 50),
)
def test_demux_splits_stdout_and_stderr_however_the_bytes_arrive(
    frames: list[tuple[int, bytes]], step: int
) -> None:
    stream = b"".join(_frame(s, d) for s, d in frames)
    demux = StreamDemux()
    got: list[tuple[int, bytes]] = []
    for start in range(0, len(stream), step):
        got += demux.feed(stream[start : start + step])
    assert got == frames


def test_exec_failure_words_the_runtime_error() -> None:
    assert exec_failure(NOT_FOUND) == 'exec failed: "nosuch": executable file not found in $PATH'
    assert exec_failure(DENIED) == 'exec failed: "/etc/passwd": permission denied'
    assert exec_failure(b"Error: runc: exec failed: something new\n") == (
        "exec failed: something new"
    )
    assert exec_failure(b"hello\n") is None
    assert exec_failure(b"Error: not from the runtime\n") is None


class _Api:
    """The engine calls a session makes after its stream ends."""

    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"Running": False, "ExitCode": self.exit_code}


class _Response:
    def close(self) -> None:
        pass


def _session(chunks: list[bytes], exit_code: int, *, tty: bool) -> PodmanExecSession:
    ours, theirs = socket.socketpair()
    for chunk in chunks:
        theirs.sendall(chunk)
    theirs.close()
    return PodmanExecSession(_Api(exit_code), "e1", ours, _Response(), tty=tty)


def _read_all(session: PodmanExecSession) -> list[tuple[int, bytes]]:
    out = []
    while (chunk := session.read()) is not None:
        out.append(chunk)
    session.close()
    return out


@pytest.mark.parametrize("tty", [False, True])
def test_a_command_that_cannot_start_is_a_failure_not_output(tty: bool) -> None:
    chunks = [NOT_FOUND, RESET] if tty else [_frame(2, NOT_FOUND), _frame(2, RESET)]
    session = _session(chunks, 127, tty=tty)
    assert _read_all(session) == []
    assert session.failure == 'exec failed: "nosuch": executable file not found in $PATH'
    assert session.exit_code() == 127


def test_output_that_only_looks_like_a_failure_is_the_command_s() -> None:
    # The command printed such a line itself and exited 0: everything is shown, as it came.
    session = _session([_frame(2, NOT_FOUND), _frame(1, b"more\n")], 0, tty=False)
    assert _read_all(session) == [(2, NOT_FOUND), (1, b"more\n")]
    assert session.failure is None


def test_ordinary_output_streams_through() -> None:
    session = _session([_frame(1, b"a\n"), _frame(2, b"b\n"), _frame(1, b"c\n")], 3, tty=False)
    assert _read_all(session) == [(1, b"a\n"), (2, b"b\n"), (1, b"c\n")]
    assert (session.failure, session.exit_code()) == (None, 3)
