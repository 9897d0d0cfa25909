"""Builders shared by the agent unit tests (imported by name, like clusters_support)."""

from __future__ import annotations

from typing import Any

HOST_ID = "hst-test"
ENGINE_REF = "sha256:" + "c" * 64


def assignment(cell_id: str = "cel-1", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cell_id": cell_id,
        "name": cell_id.removeprefix("cel-"),
        "project_id": "prj-1",
        "network": "cp-prj-1",
        "image": {"id": "img-1", "kind": "archive", "engine_ref": ENGINE_REF, "sha256": "x"},
        "cpu": 0.5,
        "memory_mb": 256,
        "command": ["sleep", "3600"],
        "env": {},
        "labels": {},
        "ports": [],
        "mounts": [],
        "restart": {"policy": "never", "max_retries": None},
        "stop_timeout": 3.0,
        "desired_state": "RUNNING",
        "restarts": 0,
        "restart_requested_at": None,
    }
    base.update(over)
    return base
