"""Logs and one-shot exec of runc cells.

A cell's stdout and stderr both go to one file (`log`, opened by the driver and given to runc,
which passes it to the container's process). `read_log` streams it (the last `tail` lines, then,
with `follow`, what is appended until the container ends); `docker_frames` wraps lines in the
Docker Engine API's 8-byte frame headers. The file does not tell stdout from stderr, nor when a
line was written: every line is framed as stdout, and timestamps are refused plainly.
"""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cellplane.drivers import errors
from cellplane.drivers.base import ExecResult

__all__ = ["docker_frames", "exec_result", "read_log", "tail_offset"]

_CHUNK = 65536
_FOLLOW_POLL_S = 0.1


def tail_offset(path: Path, lines: int) -> int:
    """The offset where the last `lines` lines of the file start (0: all of it)."""
    if lines <= 0:
        return path.stat().st_size
    with path.open("rb") as f:
        f.seek(0, 2)
        end = f.tell()
        pos = end
        found = 0
        # A final newline ends the last line; it does not start another.
        skip_last = True
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i] != 0x0A:
                    skip_last = False
                    continue
                if skip_last and pos + i == end - 1:
                    skip_last = False
                    continue
                found += 1
                if found == lines:
                    return pos + i + 1
        return 0


def read_log(
    path: Path, tail: int | None, follow: bool, running: Callable[[], bool]
) -> Iterator[bytes]:
    """The log's bytes (from the last `tail` lines), then, with `follow`, new ones until
    `running()` turns False (and what was written until then)."""
    start = 0 if tail is None else tail_offset(path, tail)
    with path.open("rb") as f:
        f.seek(start)
        while True:
            chunk = f.read(_CHUNK)
            if chunk:
                yield chunk
                continue
            if not follow:
                return
            if not running():
                rest = f.read()
                if rest:
                    yield rest
                return
            time.sleep(_FOLLOW_POLL_S)


def docker_frames(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Each complete line (and a last partial one) as one Docker stdout frame."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            data = line + b"\n"
            yield struct.pack(">BxxxL", 1, len(data)) + data
    if pending:
        yield struct.pack(">BxxxL", 1, len(pending)) + pending


def exec_result(proc: subprocess.CompletedProcess[bytes]) -> ExecResult:
    """An `ExecResult` from a finished `runc exec`: a command that could not be started at all
    (runc's own error, exit 255) becomes 127 (not found) or 126 with the reason alone."""
    output = bytes(proc.stdout or b"")
    code = proc.returncode
    if code == 255 and b"unable to start container process" in output:
        text = output.decode(errors="replace")
        reason = text[text.find("exec:") :] if "exec:" in text else text
        reason = reason.replace('\\"', '"').strip().strip('"')
        not_found = "not found" in text or "no such file" in text
        return ExecResult(127 if not_found else 126, (reason.strip() + "\n").encode())
    return ExecResult(code, output)


def check_log_options(timestamps: bool, since: int) -> None:
    if timestamps:
        raise errors.PermanentDriverError(
            "log timestamps are not recorded by the runc driver (its log file has none)"
        )
    if since:
        raise errors.PermanentDriverError(
            "logs since a time are not supported by the runc driver (its log file has no times)"
        )
