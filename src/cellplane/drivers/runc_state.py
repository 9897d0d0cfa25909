"""What the runc driver keeps about its containers, on disk and while they run.

Each container has a directory `<containers>/<id>/` holding `state.json` (a `Record`: name,
labels, image, network, timestamps, the init process's pid and start time, the exit code), its
bundle, overlay directories and log file. The records are the driver's truth: a restarted agent
reads them back and adopts the containers still running (runc's detached containers do not
depend on the process that made them).

`ExitWatcher` learns when a container's init process ends, through a pidfd. The agent is a child
subreaper (`become_subreaper`), so the init processes runc leaves behind are its children: it
reaps them and records their exit code. A container adopted after an agent restart is not its
child (its parent is now the machine's init): its end is seen, its exit code is not, and it is
recorded as unknown (None), never made up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import select
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "ExitWatcher",
    "Record",
    "become_subreaper",
    "now_rfc3339",
    "process_start_time",
]

_PR_SET_CHILD_SUBREAPER = 36


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def become_subreaper(on: bool = True) -> None:
    """Make this process the reaper of its orphaned descendants (container init processes), or
    (`on=False`) no longer: a process that only used a driver for a while (a benchmark)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def process_start_time(pid: int) -> int | None:
    """The start time (clock ticks after boot) of process `pid`, None if it is gone: with the
    pid it names one process for good (pids are reused)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


@dataclass
class Record:
    """One container as the driver knows it (`state.json`)."""

    id: str
    name: str
    labels: dict[str, str]
    image: str | None
    image_id: str | None
    created_at: str
    network: str | None = None
    address: str | None = None
    status: str = "created"  # created | running | exited
    pid: int = 0
    pid_start: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    # Whether the exit code is known (False for a container that ended while no agent watched).
    exit_known: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        tmp = directory / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, directory / "state.json")

    @classmethod
    def load(cls, directory: Path) -> Record:
        data = json.loads((directory / "state.json").read_text())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def alive(self) -> bool:
        """Whether the recorded init process still runs (the same process, not a reused pid)."""
        if self.status != "running" or self.pid <= 0:
            return False
        start = process_start_time(self.pid)
        if start is None or (self.pid_start is not None and start != self.pid_start):
            return False
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{self.pid}/stat").read_text()
            if state[state.rfind(")") + 2 :].startswith("Z"):
                return False  # ended, not yet reaped
        return True


def _exit_status(siginfo: Any) -> int:
    """The shell-style exit code from a waitid() result: the code, or 128 + the signal."""
    code = int(siginfo.si_code)
    status = int(siginfo.si_status)
    if code == os.CLD_EXITED:
        return status
    return 128 + status


class ExitWatcher:
    """One thread waiting for the end of the watched processes (pidfds in a poll set).

    `watch(pid, on_exit)`: `on_exit(exit_code_or_None)` is called once, from the watcher thread,
    when the process has ended; None when it could not be reaped (not a child of this process).
    """

    def __init__(self) -> None:
        self._poll = select.poll()
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[int, Callable[[int | None], None]]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._poll.register(self._wake_r, select.POLLIN)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="runc-exits", daemon=True)
        self._thread.start()

    def watch(self, pid: int, on_exit: Callable[[int | None], None]) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            on_exit(self._reap_pid(pid))
            return
        with self._lock:
            self._watched[fd] = (pid, on_exit)
            self._poll.register(fd, select.POLLIN)
        os.write(self._wake_w, b"x")

    @staticmethod
    def _reap_pid(pid: int) -> int | None:
        try:
            _, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status) if status else None

    def _run(self) -> None:
        while not self._closed:
            for fd, _ in self._poll.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    entry = self._watched.pop(fd, None)
                    with contextlib.suppress(KeyError, ValueError):
                        self._poll.unregister(fd)
                code: int | None
                try:
                    info = os.waitid(os.P_PIDFD, fd, os.WEXITED)
                    code = _exit_status(info) if info is not None else None
                except ChildProcessError:
                    code = None
                finally:
                    os.close(fd)
                if entry is not None:
                    with contextlib.suppress(Exception):
                        entry[1](code)

    def close(self) -> None:
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2)
        with self._lock:
            for fd in self._watched:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._watched.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)


def signal_number(name: str) -> int:
    """A signal by name (`TERM`, `SIGKILL`, `9`)."""
    if name.isdigit():
        return int(name)
    return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
