"""glibc malloc settings the daemons apply to their own process (never the machine's).

- `limit_arenas`: at most two malloc arenas (before any thread starts).
- `Trimmer`: a thread that gives the allocator's free memory back to the kernel every
  `CELLPLANE_MALLOC_TRIM_S` seconds (default 30; 0 turns it off) with `malloc_trim(0)`.

Why the trimmer (issue 14's soak, docs/fuzzing.md "Soak results"): under 10 cell creates and 10
deletes a second the agent's Python heap stayed flat (tracemalloc: +0.04 MB in 2 minutes) and so
did the bytes malloc had handed out (`mallinfo2`'s in-use), while the memory free *inside* its
arenas grew by ~5 MB a minute, and RSS with it, byte for byte. glibc returns free memory to the
kernel only from the top of a heap, and only past a threshold; chunks freed below a live one stay
resident. `malloc_trim(0)` releases every whole free page of every arena (madvise), wherever it
is; it takes each arena's lock for a few milliseconds.

Other C libraries (and non-glibc systems) are left alone: every function here does nothing
without glibc.

- `preload_jemalloc`: `python -m cellplane.daemon` (what `cellplane up`, `cellplane dev hosts` and
  the tests start; not the in-process `cellplane server`/`cellplane agent` commands) re-executes
  itself once with jemalloc preloaded
  (`CELLPLANE_ALLOCATOR`, default `jemalloc` when libjemalloc is installed; `glibc` keeps
  glibc's malloc). Why: the trimmer cannot give back memory free *inside* partly used pages, and
  under the soak that memory kept growing in both daemons (docs/fuzzing.md, "Soak results").
  jemalloc packs allocations by size class and purges unused pages on its own. The re-executed
  process takes its `LD_PRELOAD` back out of its environment at once, so what it starts
  (podman, runc, conmon, the migration child) runs with the C library's allocator. With
  jemalloc in place `limit_arenas` and `trim` act on glibc's unused allocator (harmless).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ALLOCATOR_ENV",
    "TRIM_ENV",
    "Trimmer",
    "libc",
    "limit_arenas",
    "mallinfo",
    "preload_env",
    "preload_jemalloc",
    "trim",
]

#: glibc's mallopt parameter for the number of malloc arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
TRIM_ENV = "CELLPLANE_MALLOC_TRIM_S"
DEFAULT_TRIM_S = 30.0
ALLOCATOR_ENV = "CELLPLANE_ALLOCATOR"
#: Set across the re-exec: the LD_PRELOAD and MALLOC_CONF the daemon was started with (JSON).
_ORIGINAL_PRELOAD = "CELLPLANE_ALLOCATOR_ORIGINAL_PRELOAD"


@functools.cache
def libc() -> Any | None:
    """This process's glibc (None on another C library); looked up once."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL(None)
    except (ValueError, OSError):
        return None


def limit_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas in this process (before any thread starts).

    glibc gives each thread that allocates concurrently its own arena, up to 8 per core, and
    memory freed in one arena is not reused by another: a server's worker threads (SQLite
    calls, token signing) each kept a partly used arena. The interpreter holds the GIL for
    nearly every allocation, so the arenas bought no parallelism; two cost ~3 MB less resident
    memory per daemon (measured with bench/footprint.py). An operator's ``MALLOC_ARENA_MAX``
    wins."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    c = libc()
    if c is not None:
        with contextlib.suppress(AttributeError):
            c.mallopt(_M_ARENA_MAX, arenas)


def trim() -> bool:
    """`malloc_trim(0)`: free pages of every arena back to the kernel; True if any were."""
    c = libc()
    if c is None:
        return False
    try:
        return bool(c.malloc_trim(0))
    except AttributeError:
        return False


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mallinfo() -> dict[str, int]:
    """glibc's malloc statistics in bytes ({} before glibc 2.33): `arena` (taken from the
    kernel for the arenas), `in_use` (handed out), `free` (kept inside the arenas), `mmapped`
    (large blocks, each its own mapping)."""
    c = libc()
    fn = getattr(c, "mallinfo2", None) if c is not None else None
    if fn is None:
        return {}
    fn.restype = _Mallinfo2
    m = fn()
    return {"arena": m.arena, "in_use": m.uordblks, "free": m.fordblks, "mmapped": m.hblkhd}


class Trimmer:
    """Calls `trim` every `interval_s` seconds on a daemon thread until `stop()`."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.trims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cp-malloc-trim", daemon=True)

    @classmethod
    def from_env(cls) -> Trimmer | None:
        """A started Trimmer (`CELLPLANE_MALLOC_TRIM_S`, default 30 s); None if 0 or no glibc."""
        try:
            interval = float(os.environ.get(TRIM_ENV, DEFAULT_TRIM_S))
        except ValueError:
            interval = DEFAULT_TRIM_S
        if interval <= 0 or libc() is None:
            return None
        return cls(interval).start()

    def start(self) -> Trimmer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            trim()
            self.trims += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


#: jemalloc's settings unless the operator gives MALLOC_CONF: two arenas (the GIL serialises
#: nearly every allocation), small per-thread caches (the server has ~40 threads), and unused
#: pages purged by a background thread after a second. Under the soak (docs/fuzzing.md) they kept
#: the same slope as jemalloc's defaults at a ~10 MB smaller footprint.
JEMALLOC_CONF = (
    "narenas:2,tcache_max:1024,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
)
_RESTORED = ("LD_PRELOAD", "MALLOC_CONF")


def preload_env(environ: Mapping[str, str], library: str | None) -> dict[str, str] | None:
    """The environment to re-execute a daemon in so that `library` (jemalloc) is its malloc;
    None when nothing is to be done: `CELLPLANE_ALLOCATOR=glibc`, no library installed, or this
    process is the re-executed one already. Raises ValueError naming a choice it does not know."""
    choice = environ.get(ALLOCATOR_ENV, "jemalloc").strip().lower() or "jemalloc"
    if choice not in ("jemalloc", "glibc"):
        raise ValueError(f"{ALLOCATOR_ENV}={choice!r}: choose jemalloc or glibc")
    if choice == "glibc" or library is None or _ORIGINAL_PRELOAD in environ:
        return None
    original = environ.get("LD_PRELOAD", "")
    if library in {os.path.basename(x) for x in original.replace(":", " ").split()}:
        return None  # preloaded by the operator already
    env = dict(environ)
    env[_ORIGINAL_PRELOAD] = json.dumps({k: environ.get(k) for k in _RESTORED})
    env["LD_PRELOAD"] = f"{library} {original}".strip()
    env.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return env


def preload_jemalloc(module: str, argv: list[str]) -> None:
    """Re-execute `python -m <module> <argv>` with jemalloc preloaded, once (see the module doc);
    in the re-executed process, put `LD_PRELOAD` and `MALLOC_CONF` back as they were for the
    processes it starts."""
    if _ORIGINAL_PRELOAD in os.environ:
        for name, value in json.loads(os.environ.pop(_ORIGINAL_PRELOAD)).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return
    env = preload_env(os.environ, ctypes.util.find_library("jemalloc"))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
