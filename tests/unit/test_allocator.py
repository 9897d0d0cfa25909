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


# --- jemalloc for the daemons (allocator.preload_jemalloc) ---

JEMALLOC = "libjemalloc.so.2"


def test_preload_env_puts_jemalloc_first_and_remembers_the_original() -> None:
    env = allocator.preload_env({"LD_PRELOAD": "/opt/x.so", "KEEP": "1"}, JEMALLOC)
    assert env is not None
    assert env["LD_PRELOAD"] == f"{JEMALLOC} /opt/x.so" and env["KEEP"] == "1"
    assert env["MALLOC_CONF"] == allocator.JEMALLOC_CONF
    mine = allocator.preload_env({"MALLOC_CONF": "narenas:1"}, JEMALLOC)
    assert mine is not None and mine["MALLOC_CONF"] == "narenas:1"  # the operator's wins
    # The re-executed process sees the marker and does not go round again.
    assert allocator.preload_env(env, JEMALLOC) is None
    fresh = allocator.preload_env({}, JEMALLOC)
    assert fresh is not None and fresh["LD_PRELOAD"] == JEMALLOC


@pytest.mark.parametrize(
    ("environ", "library"),
    [
        ({"CELLPLANE_ALLOCATOR": "glibc"}, JEMALLOC),  # the operator keeps glibc's malloc
        ({}, None),  # jemalloc is not installed
        ({"LD_PRELOAD": f"/usr/lib/x86_64-linux-gnu/{JEMALLOC}"}, JEMALLOC),  # preloaded already
    ],
)
def test_preload_env_does_nothing_when_it_should_not(
    environ: dict[str, str], library: str | None
) -> None:
    assert allocator.preload_env(environ, library) is None


def test_preload_env_refuses_an_unknown_allocator() -> None:
    with pytest.raises(
        ValueError, match="CELLPLANE_ALLOCATOR='tcmalloc': choose jemalloc or glibc"
    ):
        allocator.preload_env({"CELLPLANE_ALLOCATOR": "tcmalloc"}, JEMALLOC)


_PROBE = """
import json, os, subprocess, sys
from cellplane import allocator
allocator.preload_jemalloc("cp_alloc_probe", sys.argv[1:])
maps = open("/proc/self/maps").read()
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.environ.get('LD_PRELOAD', '-'))"],
    capture_output=True, text=True, check=True,
).stdout.strip()
print(json.dumps({
    "jemalloc": "libjemalloc" in maps,
    "preload": os.environ.get("LD_PRELOAD", "-"),
    "conf": os.environ.get("MALLOC_CONF", "-"),
    "child": child,
    "args": sys.argv[1:],
}))
"""


def _probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cp_alloc_probe.py").write_text(_PROBE)
    environ = {
        k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "CELLPLANE_ALLOCATOR")
    }
    environ["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "cp_alloc_probe", "server", "--port", "1"],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.skipif(
    __import__("ctypes.util").util.find_library("jemalloc") is None,
    reason="libjemalloc2 is not installed (scripts/install-system.sh installs it)",
)
def test_the_daemon_reexecutes_with_jemalloc_and_its_children_do_not_inherit_it(
    tmp_path: Path,
) -> None:
    p = _probe(tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out == {
        "jemalloc": True,
        "preload": "-",
        "conf": "-",
        "child": "-",
        "args": ["server", "--port", "1"],
    }
    kept = json.loads(_probe(tmp_path, LD_PRELOAD="", CELLPLANE_ALLOCATOR="glibc").stdout)
    assert kept["jemalloc"] is False


def test_an_unknown_allocator_stops_the_daemon_with_its_name(tmp_path: Path) -> None:
    environ = {**os.environ, "CELLPLANE_ALLOCATOR": "tcmalloc"}
    p = subprocess.run(
        [sys.executable, "-m", "cellplane.daemon", "server", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip
    assert p.returncode == 1
    assert p.stderr.strip() == "cellplane: CELLPLANE_ALLOCATOR='tcmalloc': choose jemalloc or glibc"
    assert not any(tmp_path.iterdir()), "nothing was started"
