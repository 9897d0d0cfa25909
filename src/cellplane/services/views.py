"""JSON views of state objects: the one place the API's resource shapes are written down in code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cellplane.state.models import Cell, CellEvent, Flavor, Host, Image, Project, Volume

__all__ = [
    "cell_view",
    "flavor_view",
    "host_view",
    "image_view",
    "iso",
    "project_view",
    "volume_view",
]


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def cell_view(
    cell: Cell,
    *,
    project: str,
    tenant: str,
    image: str,
    events: list[CellEvent] | None = None,
    host_name: str | None = None,
    networks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": cell.id,
        "name": cell.name,
        "project": project,
        "tenant": tenant,
        "image": image,
        "flavor": cell.flavor,
        "cpu": cell.cpu,
        "memory_mb": cell.memory_mb,
        "disk_gb": cell.disk_gb,
        "command": cell.command,
        "entrypoint": cell.entrypoint,
        "workdir": cell.workdir,
        "user": cell.user,
        "hostname": cell.hostname,
        "read_only": bool(cell.read_only),
        "pids_limit": cell.pids_limit,
        "env": cell.env,
        "labels": cell.labels,
        "ports": cell.ports,
        "volumes": cell.volumes,
        "restart": {"policy": cell.restart_policy, "max_retries": cell.max_retries},
        "isolation": cell.isolation or "standard",
        "stop_timeout": cell.stop_timeout,
        "healthcheck": cell.healthcheck,
        "health": cell.health,
        "placement": cell.placement or "spread",
        "affinity": list(cell.affinity or []),
        "generation": cell.generation or 1,
        "desired_state": cell.desired_state,
        "state": cell.state,
        "message": cell.message,
        "host": cell.host_id,
        "host_name": host_name,
        "address": cell.address,
        "networks": networks or [],
        "exit_code": cell.exit_code,
        "restarts": cell.restarts,
        "container_id": cell.container_id,
        "task": cell.task_id,
        "events": [{"at": iso(e.at), "type": e.type, "message": e.message} for e in (events or [])],
        "created_at": iso(cell.created_at),
        "updated_at": iso(cell.updated_at),
    }


def host_view(host: Host, state: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": host.id,
        "name": host.name,
        "address": host.address,
        "state": state,
        "maintenance": host.maintenance,
        "labels": host.labels,
        "zone": host.zone,
        # cpu is allocatable CPU: cores x cpu_ratio (the agent's overcommit; null when unknown).
        "capacity": {
            "cpu": host.cpu,
            "memory_mb": host.memory_mb,
            "disk_gb": host.disk_gb,
            "cores": host.cpu_cores,
            "cpu_ratio": host.cpu_ratio,
        },
        "usage": usage,
        "last_heartbeat": iso(host.last_heartbeat),
        "created_at": iso(host.created_at),
        "revoked_at": iso(host.revoked_at),
    }


def flavor_view(f: Flavor) -> dict[str, Any]:
    return {"name": f.name, "cpu": f.cpu, "memory_mb": f.memory_mb, "disk_gb": f.disk_gb}


def image_view(i: Image) -> dict[str, Any]:
    return {
        "id": i.id,
        "name": i.name,
        "kind": i.kind,
        "size_bytes": i.size_bytes,
        "sha256": i.sha256,
        "refs": i.refs,
        "created_at": iso(i.created_at),
    }


def volume_view(
    v: Volume,
    *,
    project: str,
    attached_to: list[str],
    attached_names: list[str] | None = None,
    host_name: str | None = None,
    networks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": v.id,
        "name": v.name,
        "project": project,
        "size_gb": v.size_gb,
        "host": v.host_id,
        "host_name": host_name,
        "state": v.state,
        "attached_to": attached_to,  # cell ids
        "attached_names": attached_names if attached_names is not None else [],  # their names
        "created_at": iso(v.created_at),
        "labels": dict(v.labels or {}),
        "docker_name": v.docker_name,
    }


def project_view(p: Project, tenant: str) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "tenant": tenant,
        "min_isolation": p.min_isolation,
        "created_at": iso(p.created_at),
    }
