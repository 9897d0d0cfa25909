"""The terminal side of `cellplane cell exec`: stdin pump, raw mode, window size, exit code.

`run` drives an `ExecSession` of the SDK (`Client.exec_stream`): what the command prints is
written as it comes (stdout to stdout, stderr to stderr); with `-i` a thread forwards stdin and
closes it at EOF; with `-t` the local terminal is put in raw mode (so keys, Ctrl-C included, go
to the command) and restored on every way out, and the window size follows SIGWINCH. The
command's exit code becomes the return value.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cellplane.client.exec import ExecSession

__all__ = ["run", "stdin_is_terminal", "terminal_size"]


def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):
        return False


def terminal_size() -> tuple[int, int] | None:
    """(cols, rows) of the terminal the CLI runs in, or None without one."""
    for stream in (sys.stdout, sys.stdin, sys.stderr):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError):
            continue
        if size.columns > 0 and size.lines > 0:
            return size.columns, size.lines
    return None


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode for the block, restored however it ends."""
    try:
        fd = sys.stdin.fileno()
        terminal = enabled and os.isatty(fd)
    except (OSError, ValueError):
        terminal = False
    if not terminal:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        # TCSANOW: what was typed ahead stays queued for the command (TCSAFLUSH would drop it).
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _follow_window(session: ExecSession, enabled: bool) -> Iterator[None]:
    """SIGWINCH sends the new window size while the block runs (main thread only)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_resize(_signum: int, _frame: Any) -> None:
        size = terminal_size()
        if size is not None:
            session.resize(*size)

    previous = signal.signal(signal.SIGWINCH, on_resize)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def _stdin_reader() -> Callable[[], bytes]:
    """What one read of stdin gives (a key in raw mode, a pipe's chunk); b"" at EOF.

    The file descriptor itself when there is one: a daemon thread blocked inside the buffered
    `sys.stdin.buffer` at exit holds its lock, and the interpreter aborts on it at shutdown."""
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):  # a stand-in stdin (tests): its buffer
        stream: Any = sys.stdin.buffer
        return lambda: bytes(stream.read1(65536))
    return lambda: os.read(fd, 65536)


def _pump_stdin(session: ExecSession) -> None:
    """Stdin to the command as it comes, then its end."""
    try:
        read = _stdin_reader()
        while data := read():
            session.send_stdin(data)
    except (OSError, ValueError):
        pass
    finally:
        session.close_stdin()


def _write(stream: Any, data: bytes) -> None:
    stream.write(data)
    stream.flush()


def run(session: ExecSession, *, forward_stdin: bool, tty: bool) -> tuple[int | None, str | None]:
    """Relay one session to its end: the command's (exit code, error)."""
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    with _raw_terminal(tty), _follow_window(session, tty):
        if forward_stdin:
            threading.Thread(
                target=_pump_stdin, args=(session,), name="cp-exec-stdin", daemon=True
            ).start()
        for stream, data in session.output():
            _write(out if stream == "stdout" else err, data)
    status = session.status
    return status.exit_code, status.error
