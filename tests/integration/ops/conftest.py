"""Helpers of the operations tests (backup and restore, faults): each module starts the real
deployment it needs (`cellplane.testing.harness.Deployment`) and closes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
IMAGE = "busybox"
SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}


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
