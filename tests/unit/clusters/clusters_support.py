"""Constants and builders shared by the cluster unit tests (imported by name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cellplane.scheduler import Resources

_REPO = Path(__file__).resolve().parents[3]
# The lead copies the published Serengeti samples into the repo; until then use the shared copy.
BDE_FIXTURES = next(
    (
        d
        for d in (
            _REPO / "tests" / "fixtures" / "bde",
            _REPO.parent / "shared" / "fixtures" / "bde",  # CI: shared/ beside the clone
            Path("/work/shared/fixtures/bde"),
        )
        if d.is_dir()
    ),
    _REPO / "tests" / "fixtures" / "bde",
)

FLAVORS = {
    "SMALL": Resources(cpu=1, memory_mb=1024, disk_gb=10),
    "MEDIUM": Resources(cpu=2, memory_mb=4096, disk_gb=20),
    "LARGE": Resources(cpu=4, memory_mb=8192, disk_gb=40),
    "EXTRA_LARGE": Resources(cpu=8, memory_mb=16384, disk_gb=80),
}


def bde_fixture_files() -> list[Path]:
    return sorted(BDE_FIXTURES.glob("*.json"))


def write_catalog(root: Path, files: dict[str, Any]) -> Path:
    """Write a catalog folder: str values as text, other values as JSON."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        path.write_text(text, encoding="utf-8")
    return root
