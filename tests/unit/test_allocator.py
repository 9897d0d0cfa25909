"""The daemons' allocator settings (cellplane.allocator) and the dev-only tracer (memtrace).

The soak's growth (issue 14) was memory glibc kept free inside its arenas, not Python objects:
these tests check that `trim` gives such memory back, that the `Trimmer` calls it on its
schedule, and that the tracer writes what the diagnosis read (snapshots, traced vs RSS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from cellplane import allocator, memtrace

needs_glibc = pytest.mark.skipif(allocator.libc() is None, reason="glibc only")

# A heap with 64 MB freed below a live block (so glibc's own trim at the top cannot give it back),
# as the agent's heap was: RSS before and after `allocator.trim`, and malloc's free bytes.
_FRAGMENTED = """
import ctypes, json
from cellplane import allocator, memtrace
c = ctypes.CDLL(None)
c.malloc.restype = ctypes.c_void_p
c.malloc.argtypes = [ctypes.c_size_t]
c.free.argtypes = [ctypes.c_void_p]
blocks = [c.malloc(64 * 1024) for _ in range(1024)]
for b in blocks:
    ctypes.memset(b, 1, 64 * 1024)
pin = c.malloc(64 * 1024)  # above them all
for b in blocks:
    c.free(b)
free = allocator.mallinfo()["free"]
before = memtrace.status_kb()["VmRSS"]
trimmed = allocator.trim()
after = memtrace.status_kb()["VmRSS"]
print(json.dumps({"free": free, "before": before, "after": after, "trimmed": trimmed}))
"""


@needs_glibc
def test_trim_gives_back_memory_freed_below_a_live_block() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    r = json.loads(out.stdout)
    assert r["free"] >= 60 * 2**20  # kept by malloc, not handed back on free()
    assert r["trimmed"] is True
    assert r["before"] - r["after"] >= 48 * 1024  # kB: most of the 64 MB left RSS


def test_trimmer_trims_on_its_schedule_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    twice = threading.Event()

    def fake_trim() -> bool:
        calls.append(1.0)
        if len(calls) >= 2:
            twice.set()
        return True

    monkeypatch.setattr(allocator, "trim", fake_trim)
    t = allocator.Trimmer(0.01).start()
    assert twice.wait(5)
    t.stop()
    n = len(calls)
    assert not t._thread.is_alive()
    assert len(calls) == n  # none after stop()


@needs_glibc
def test_trimmer_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(allocator.TRIM_ENV, "0")
    assert allocator.Trimmer.from_env() is None  # turned off
    monkeypatch.setenv(allocator.TRIM_ENV, "12.5")
    t = allocator.Trimmer.from_env()
    assert t is not None and t.interval_s == 12.5
    t.stop()
    monkeypatch.delenv(allocator.TRIM_ENV)
    t = allocator.Trimmer.from_env()
    assert t is not None and t.interval_s == allocator.DEFAULT_TRIM_S
    t.stop()


def test_memtrace_is_off_without_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELLPLANE_MEMTRACE", raising=False)
    assert memtrace.from_env("agent") is None


def test_memtrace_writes_snapshots_and_figures(tmp_path: Path) -> None:
    was_tracing = tracemalloc.is_tracing()
    trace = memtrace.MemTrace(tmp_path, "agent", interval_s=3600).start()
    try:
        kept = [bytearray(1000) for _ in range(2000)]  # ~2 MB, traced
        first = trace.dump()
        trace.stop()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    snap = tracemalloc.Snapshot.load(str(first))
    assert sum(s.size for s in snap.statistics("filename")) >= 2_000_000
    lines = [
        json.loads(x) for x in (tmp_path / f"agent-{os.getpid()}.jsonl").read_text().splitlines()
    ]
    assert [x["n"] for x in lines[:2]] == [1, 2]
    assert lines[0]["traced_mb"] >= 1.9
    assert lines[0]["status_kb"]["VmRSS"] > 0
    mapped = lines[0]["anon_mappings"]  # [count, resident kB] by size
    assert sum(n for n, _ in mapped.values()) > 0 and sum(kb for _, kb in mapped.values()) > 0
    assert "trim_probe" in lines[-1]
    del kept


def test_memtrace_without_frames_writes_figures_only(tmp_path: Path) -> None:
    if tracemalloc.is_tracing():
        pytest.skip("tracemalloc already on in this run")
    trace = memtrace.MemTrace(tmp_path, "server", interval_s=3600, frames=0).start()
    assert trace.dump() is None
    trace.stop()
    assert not tracemalloc.is_tracing()
    assert not list(tmp_path.glob("*.tracemalloc"))
    line = json.loads((tmp_path / f"server-{os.getpid()}.jsonl").read_text().splitlines()[0])
    assert line["traced_mb"] == 0 and line["status_kb"]["VmRSS"] > 0
