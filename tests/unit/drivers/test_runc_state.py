"""`cellplane.drivers.runc_state`: container records and the exit watcher (real processes)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from cellplane.drivers.runc_state import ExitWatcher, Record, process_start_time


def test_record_round_trip_and_liveness(tmp_path: Path) -> None:
    record = Record("id1", "cp-x", {"a": "b"}, "busybox", "abc", "2026-01-01T00:00:00Z")
    record.save(tmp_path)
    assert Record.load(tmp_path) == record
    assert not record.alive()  # created, never started
    record.status, record.pid = "running", os.getpid()
    record.pid_start = process_start_time(os.getpid())
    assert record.alive()
    record.pid_start = (record.pid_start or 0) + 1  # the pid now names another process
    assert not record.alive()


def test_process_start_time_of_a_gone_process() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert process_start_time(proc.pid) is None


def _watched_exit(command: list[str], kill: bool = False) -> int | None:
    watcher = ExitWatcher()
    try:
        proc = subprocess.Popen(command)
        got: list[int | None] = []
        done = threading.Event()

        def on_exit(code: int | None) -> None:
            got.append(code)
            done.set()

        watcher.watch(proc.pid, on_exit)
        if kill:
            proc.kill()
        assert done.wait(30)
        return got[0]
    finally:
        watcher.close()


def test_exit_codes_of_children() -> None:
    assert _watched_exit(["sh", "-c", "exit 3"]) == 3
    assert _watched_exit(["sleep", "60"], kill=True) == 137


def test_a_process_that_is_not_a_child_has_an_unknown_exit_code() -> None:
    # A grandchild that outlives its parent is re-parented away from this process (unless it is
    # a subreaper, which this test process is not made into here).
    out = subprocess.run(
        ["sh", "-c", "sleep 0.5 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
    )
    pid = int(out.stdout)
    if f"PPid:\t{os.getpid()}\n" in Path(f"/proc/{pid}/status").read_text():
        pytest.skip("this process reaps orphans (a subreaper): the exit code is known")
    watcher = ExitWatcher()
    try:
        got: list[int | None] = []
        done = threading.Event()
        watcher.watch(pid, lambda code: (got.append(code), done.set()))
        assert done.wait(30)
        assert got == [None]
    finally:
        watcher.close()


def test_a_start_the_last_agent_did_not_record_is_adopted(tmp_path: Path) -> None:
    from cellplane.drivers.runc import RuncDriver

    record = Record("id2", "cp-y", {}, None, None, "2026-01-01T00:00:00Z")
    RuncDriver._adopt_started(record, tmp_path)  # no pid file: never started
    assert record.status == "created"
    (tmp_path / "pid").write_text(f"{os.getpid()}\n")  # runc wrote it; the agent died
    RuncDriver._adopt_started(record, tmp_path)
    assert (record.status, record.pid) == ("running", os.getpid())
    assert record.alive()
    assert Record.load(tmp_path).status == "running"
