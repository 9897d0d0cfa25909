"""A sampling profiler of every thread of a process, for benchmarks (`CELLPLANE_PROFILE`).

cProfile sees one thread, and the server's work runs on many (the event loop, the thread pool of
the synchronous routes, the controller loops); py-spy is not always installed. `Sampler` looks at
every thread's stack every `interval` seconds (`sys._current_frames`), leaves out threads that
wait (their innermost frame is a known blocking call) and counts, for each function, the samples
in which it was running (own) and those in which it was on the stack (cumulative). `stop()`
(and every `flush_s` seconds) writes a text report and the collapsed stacks (`<path>.collapsed`, flame graph input).

`cellplane server` runs one when `CELLPLANE_PROFILE` names the report's path (`daemon`).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path
from types import FrameType

__all__ = ["Sampler", "frame_key", "is_idle"]

# Innermost functions of a thread that waits (for a lock, a socket, a timer, a queue).
_IDLE = frozenset(
    {
        "wait",
        "select",
        "poll",
        "epoll",
        "_worker",
        "accept",
        "get",
        "sleep",
        "acquire",
        "recv",
        "recv_into",
        "readline",
        "run_forever",
        "_run_once",
        "serve_forever",
    }
)


def frame_key(frame: FrameType) -> str:
    code = frame.f_code
    return f"{code.co_name} ({Path(code.co_filename).name}:{code.co_firstlineno})"


def is_idle(frame: FrameType) -> bool:
    """Whether a thread whose innermost frame is `frame` is waiting rather than working."""
    return frame.f_code.co_name in _IDLE


class Sampler:
    def __init__(
        self, path: Path, interval: float = 0.005, depth: int = 80, flush_s: float = 5.0
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.path = path
        self.interval = interval
        self.depth = depth
        self.flush_s = flush_s
        self.own: collections.Counter[str] = collections.Counter()
        self.cumulative: collections.Counter[str] = collections.Counter()
        self.stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.samples = 0  # passes over the threads
        self.busy = 0  # thread stacks counted (working, not waiting)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cp-sampler", daemon=True)
        self._started = 0.0

    def sample(self) -> None:
        """One pass over every other thread's stack."""
        me = threading.get_ident()
        self.samples += 1
        for tid, frame in sys._current_frames().items():
            if tid == me or is_idle(frame):
                continue
            self.busy += 1
            stack: list[str] = []
            f: FrameType | None = frame
            while f is not None and len(stack) < self.depth:
                stack.append(frame_key(f))
                f = f.f_back
            self.own[stack[0]] += 1
            for key in set(stack):
                self.cumulative[key] += 1
            self.stacks[tuple(reversed(stack))] += 1

    def _run(self) -> None:
        # Written every few seconds too: a server stopped by a signal may never return to
        # the code that would call `stop()`.
        last = time.monotonic()
        while not self._stop.wait(self.interval):
            self.sample()
            if time.monotonic() - last >= self.flush_s:
                self.write()
                last = time.monotonic()

    def start(self) -> Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def report(self, top: int = 40) -> str:
        seconds = time.monotonic() - self._started
        lines = [
            f"{self.samples} passes in {seconds:.1f} s (every {self.interval * 1000:g} ms), "
            f"{self.busy} busy thread stacks",
        ]
        for title, counts in (("own", self.own), ("cumulative", self.cumulative)):
            lines.append(f"\n--- top {top} by {title} samples (share of busy stacks) ---")
            for key, n in counts.most_common(top):
                lines.append(f"{n:8d} {100 * n / max(1, self.busy):5.1f}%  {key}")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        """Stop sampling; write the report and the collapsed stacks."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(self.report())
        collapsed = self.path.with_name(self.path.name + ".collapsed")
        collapsed.write_text(
            "".join(f"{';'.join(stack)} {n}\n" for stack, n in self.stacks.most_common())
        )
