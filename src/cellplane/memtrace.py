"""A dev-only memory tracer of a daemon, for soaks (`CELLPLANE_MEMTRACE`; off by default).

When `CELLPLANE_MEMTRACE` names a directory, `python -m cellplane.daemon server|agent` starts
tracemalloc (`CELLPLANE_MEMTRACE_FRAMES` frames a traceback, default 8; 0: no tracemalloc, the
figures below only, at little cost) and writes every `CELLPLANE_MEMTRACE_S` seconds (default 60),
and once more at exit:

- `<role>-<pid>-<n>.tracemalloc`: a `tracemalloc.Snapshot` (diff two with
  `Snapshot.load(b).compare_to(Snapshot.load(a), "traceback")`);
- one JSON line in `<role>-<pid>.jsonl`: seconds since start, tracemalloc's traced total, VmRSS,
  the thread count, glibc's `mallinfo2` (bytes in use by malloc, free inside its arenas, mmapped)
  and the number of objects the garbage collector tracks; at exit, RSS before and after one
  `malloc_trim(0)` (how much of it was free memory kept by the allocator).

So that a growth of RSS can be told apart: Python objects (traced grows as much), free memory
kept by the allocator (traced flat, `free` grows), or something outside both (threads' stacks,
C libraries that do not use malloc). Tracing costs CPU and memory: never in production.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

from cellplane.allocator import mallinfo, trim

__all__ = ["MemTrace", "anon_mappings", "from_env", "sqlite_memory", "status_kb"]


def status_kb(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, RssAnon and Threads of a process, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "Threads"):
                out[key] = int(value.split()[0])
    return out


def anon_mappings(pid: int | str = "self") -> dict[str, list[int]]:
    """Anonymous private mappings by size, `[count, resident kB]` (/proc/<pid>/smaps): 1 MiB ones
    are pymalloc's arenas, 8 MiB ones threads' stacks, 64 MiB ones malloc's second arena."""
    out: dict[str, list[int]] = {}
    size_kb, anon = 0, False
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                size_kb, anon = (hi - lo) // 1024, len(head) == 5
            elif anon and head[0] == "Rss:":
                key = f"{size_kb}k" if size_kb in (4, 1024, 8192, 65536) else "other"
                entry = out.setdefault(key, [0, 0])
                entry[0] += 1
                entry[1] += int(head[1])
    return out


def sqlite_memory() -> dict[str, int]:
    """SQLite's own heap in bytes (its page caches, statements, schemas), all connections of this
    process: `sqlite3_memory_used` and `_highwater` of the library `sqlite3` loaded ({} if none)."""
    lib = next(
        (
            line.split()[-1]
            for line in Path("/proc/self/maps").read_text().splitlines()
            if "libsqlite3" in line
        ),
        None,
    )
    if lib is None:
        return {}
    c = ctypes.CDLL(lib)
    c.sqlite3_memory_used.restype = ctypes.c_int64
    c.sqlite3_memory_highwater.restype = ctypes.c_int64
    c.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return {"used": c.sqlite3_memory_used(), "highwater": c.sqlite3_memory_highwater(0)}


class MemTrace:
    """Snapshots and figures of this process every `interval_s` seconds into `directory`."""

    def __init__(self, directory: Path, role: str, interval_s: float = 60.0, frames: int = 8):
        self.directory = directory
        self.role = role
        self.interval_s = interval_s
        self.frames = frames
        self.started = time.monotonic()
        self.n = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memtrace", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> MemTrace:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.frames > 0 and not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
        self._thread.start()
        return self

    def dump(self) -> Path | None:
        """Write a snapshot (None without tracing: frames 0) and a line of figures."""
        with self._lock:
            self.n += 1
            prefix = self.directory / f"{self.role}-{os.getpid()}"
            path = None
            if tracemalloc.is_tracing():
                path = prefix.with_name(f"{prefix.name}-{self.n}.tracemalloc")
                tracemalloc.take_snapshot().dump(str(path))
            current, peak = tracemalloc.get_traced_memory()
            line = {
                "n": self.n,
                "t": round(time.monotonic() - self.started, 1),
                "traced_mb": round(current / 2**20, 2),
                "traced_peak_mb": round(peak / 2**20, 2),
                "tracemalloc_overhead_mb": round(tracemalloc.get_tracemalloc_memory() / 2**20, 2),
                "status_kb": status_kb(),
                "mallinfo_mb": {k: round(v / 2**20, 2) for k, v in mallinfo().items()},
                "sqlite_mb": {k: round(v / 2**20, 2) for k, v in sqlite_memory().items()},
                "anon_mappings": anon_mappings(),
                "gc_objects": len(gc.get_objects()),
                "threads": threading.active_count(),
                "thread_names": sorted(
                    {t.name.rstrip("0123456789-_ ") for t in threading.enumerate()}
                ),
            }
            with prefix.with_suffix(".jsonl").open("a") as f:
                f.write(json.dumps(line) + "\n")
            return path

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.dump()

    def stop(self) -> None:
        """The last snapshot, then one `malloc_trim` and what it gave back (`trim_probe`)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.dump()
            before = status_kb().get("VmRSS", 0)
            trim()
            line = {"trim_probe": {"rss_before_kb": before, "rss_after_kb": status_kb()["VmRSS"]}}
            with (self.directory / f"{self.role}-{os.getpid()}.jsonl").open("a") as f:
                f.write(json.dumps(line) + "\n")


def from_env(role: str) -> MemTrace | None:
    """A started MemTrace when `CELLPLANE_MEMTRACE` names a directory, else None."""
    directory = os.environ.get("CELLPLANE_MEMTRACE")
    if not directory:
        return None
    interval = float(os.environ.get("CELLPLANE_MEMTRACE_S", "60"))
    frames = int(os.environ.get("CELLPLANE_MEMTRACE_FRAMES", "8"))
    return MemTrace(Path(directory), role, interval, frames).start()
