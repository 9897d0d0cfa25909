"""Helpers of the operations tests (backup and restore, faults): each module starts the real
deployment it needs (`cellplane.testing.harness.Deployment`) and closes it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cellplane.client import TERMINAL_TASK_STATES, Client

T = TypeVar("T")
IMAGE = "busybox"
SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}
# Runs until stopped and exits 0 at once on SIGTERM.
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def wait_for(check: Callable[[], T], timeout: float = 60.0, what: str = "") -> T:
    """Call `check` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}: {last!r}")
        time.sleep(0.2)


def finish(client: Client, task_id: str, timeout: float = 120.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        task = client.get_task(task_id)
        return dict(task) if task["state"] in TERMINAL_TASK_STATES else None

    return wait_for(check, timeout, f"task {task_id} to finish")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `cellplane` command (this interpreter, this source tree)."""
    return subprocess.run(
        [sys.executable, "-m", "cellplane.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` but SQLite's, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("cellplane.db")
    }
