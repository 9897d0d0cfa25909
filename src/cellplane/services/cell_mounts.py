"""A new cell's mounts, checked before anything is written: its named volumes exist (and live on
one host at most), and its host paths lie under a directory the operator allows
(`Services.allowed_host_paths`, `CELLPLANE_ALLOWED_HOST_PATHS`; `cellplane.host_paths`).

The cell keeps its mounts in its JSON `volumes` column: `{"volume", "path", "read_only"}` for a
named volume, as always, and `{"host_path", "path", "read_only"}` for a host directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane import host_paths
from cellplane.errors import Conflict, Forbidden, ValidationFailed
from cellplane.services.context import Services
from cellplane.services.schemas import VolumeMount
from cellplane.state.models import Project, Volume

__all__ = ["check_host_paths", "check_mounts", "stored", "volume_names"]


def check_host_paths(svc: Services, mounts: Sequence[VolumeMount]) -> None:
    """403 naming the first host path that no directory of the operator's list admits."""
    for m in mounts:
        if m.host_path is None:
            continue
        if host_paths.allowed_root(m.host_path, svc.allowed_host_paths) is None:
            raise Forbidden(host_paths.not_allowed_message(m.host_path))


def check_mounts(
    svc: Services, s: Session, project: Project, mounts: Sequence[VolumeMount]
) -> str | None:
    """Refuse mounts the cell may not have (host paths first: 403; a missing volume: 422; volumes
    on two hosts: 409). Returns the host its volumes are bound to (None: any)."""
    check_host_paths(svc, mounts)
    bound_host = None
    for i, m in enumerate(mounts):
        if m.volume is None:
            continue
        v = s.scalar(select(Volume).where(Volume.project_id == project.id, Volume.name == m.volume))
        if v is None or v.state != "READY":
            raise ValidationFailed.field(
                f"volumes[{i}].volume", f"volume {m.volume!r} does not exist in {project.name!r}"
            )
        if v.host_id:
            if bound_host and bound_host != v.host_id:
                raise Conflict("the cell's volumes live on different hosts")
            bound_host = v.host_id
    return bound_host


def stored(mounts: Sequence[VolumeMount]) -> list[dict[str, Any]]:
    """The mounts as the cell's `volumes` column keeps them (a named volume's as it always was)."""
    return [m.model_dump(exclude_none=True) for m in mounts]


def volume_names(mounts: Sequence[dict[str, Any]] | None) -> list[str]:
    """The named volumes among a cell's stored mounts (its host paths left out)."""
    return [m["volume"] for m in mounts or [] if m.get("volume")]
