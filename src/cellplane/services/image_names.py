"""Image names of the catalogue as the Docker-compatible endpoint uses them: several names for one
image, registering a loaded or built archive under its names, removing a name.

Called by `cellplane.dockerapi.images` (load, tag, rmi, build, import). A second name for an image
(`docker tag`) is a second catalogue row with the same archive file, engine id and digest: the
bytes are stored once, and a cell's image row stays what it was made from. The file goes when the
last row naming it goes. A name that already exists is pointed at the new image (Docker moves a
tag) unless a cell uses it: then the change is refused, naming the cells.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, NotFound, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.sealing import AGENT_SECRET_COLUMN
from cellplane.services.context import Services
from cellplane.services.images import inspect_archive
from cellplane.state.models import Cell, Host, Image, Project

__all__ = ["add_name", "build_host", "entries", "register_archive", "remove_name", "users"]


def _entry(i: Image) -> dict[str, Any]:
    return {
        "id": i.id,
        "name": i.name,
        "kind": i.kind,
        "path": i.path,
        "sha256": i.sha256,
        "engine_ref": i.engine_ref,
        "refs": list(i.refs or []),
        "size_bytes": i.size_bytes,
        "created_at": i.created_at,
    }


def entries(svc: Services) -> list[dict[str, Any]]:
    """Every catalogue row, with its engine id and file (for the endpoint's own views)."""
    with svc.db.reader() as s:
        return [_entry(i) for i in s.scalars(select(Image).order_by(Image.name))]


def _users(s: Session, image_id: str, project_id: str) -> str:
    """Which cells use an image: the names of the project's own, a count of the others."""
    rows = s.execute(
        select(Cell.name, Cell.project_id, Project.name)
        .join(Project, Project.id == Cell.project_id)
        .where(Cell.image_id == image_id)
    ).all()
    if not rows:
        return ""
    mine = sorted(f"{n} (project {pn})" for n, pid, pn in rows if pid == project_id)
    others = sum(1 for _, pid, _ in rows if pid != project_id)
    parts = mine + ([f"{others} cell(s) of other projects"] if others else [])
    return ", ".join(parts)


def users(svc: Services, image_id: str, project_id: str) -> str:
    with svc.db.reader() as s:
        return _users(s, image_id, project_id)


def _path_shared(s: Session, path: str | None, but: str) -> bool:
    if not path:
        return False
    n = s.scalar(select(func.count()).select_from(Image).where(Image.path == path, Image.id != but))
    return bool(n)


def _point(s: Session, row: Image, source: dict[str, Any], project_id: str) -> str | None:
    """Point an existing name at `source` (a moved tag); the file no row names any more."""
    if row.engine_ref == source["engine_ref"]:
        return None
    if row.kind == "host":
        raise Conflict(f"the name {row.name!r} is the built-in host image's")
    used = _users(s, row.id, project_id)
    if used:
        raise Conflict(
            f"the name {row.name!r} belongs to an image in use by {used}: remove those "
            "containers first, or choose another name"
        )
    old = row.path if not _path_shared(s, row.path, row.id) else None
    row.path, row.sha256, row.engine_ref = source["path"], source["sha256"], source["engine_ref"]
    row.refs, row.size_bytes, row.created_at = source["refs"], source["size_bytes"], utcnow()
    return old if old != row.path else None


def _name_row(s: Session, name: str, source: dict[str, Any], project_id: str) -> str | None:
    row = s.scalar(select(Image).where(Image.name == name))
    if row is not None:
        return _point(s, row, source, project_id)
    s.add(
        Image(
            id=new_id("img"),
            name=name,
            kind="archive",
            path=source["path"],
            sha256=source["sha256"],
            engine_ref=source["engine_ref"],
            refs=source["refs"],
            size_bytes=source["size_bytes"],
            created_at=utcnow(),
        )
    )
    return None


def register_archive(
    svc: Services, names: list[str], upload: Path, sha256: str, size: int, project_id: str
) -> tuple[str, list[str]]:
    """Register a checked-in archive (written to `upload`, which this takes over) under each of
    `names`: (engine id, the names). ValidationFailed for an unreadable archive; Conflict (and
    nothing changed) when a name belongs to an image a cell uses."""
    try:
        if not names:
            raise ValidationFailed.field("names", "no name to register the image under")
        if size == 0:
            raise ValidationFailed.field("body", "empty upload: send the tarball as the body")
        engine_id, tags = inspect_archive(upload)
        final = svc.images_dir / f"{new_id('img')}.tar"
        source = {
            "path": str(final),
            "sha256": sha256,
            "engine_ref": f"sha256:{engine_id}",
            "refs": tags,
            "size_bytes": size,
        }
        gone: list[str] = []
        with svc.db.session() as s:
            for name in dict.fromkeys(names):
                old = _name_row(s, name, source, project_id)
                if old:
                    gone.append(old)
            s.flush()
            if s.scalar(select(Image.id).where(Image.path == str(final)).limit(1)):
                os.replace(upload, final)  # else every name had this image already
        for path in gone:
            Path(path).unlink(missing_ok=True)
        return engine_id, names
    finally:
        upload.unlink(missing_ok=True)


def add_name(svc: Services, image_id: str, name: str, project_id: str) -> None:
    """A second name for the catalogue row `image_id` (same file, no copy of the bytes)."""
    gone = None
    with svc.db.session() as s:
        src = s.get(Image, image_id)
        if src is None:
            raise NotFound(f"image {image_id!r} does not exist")
        if src.kind != "archive":
            raise Conflict(f"image {src.name!r} ({src.kind}) cannot have another name")
        gone = _name_row(s, name, _entry(src), project_id)
    if gone:
        Path(gone).unlink(missing_ok=True)


def remove_name(svc: Services, image_id: str, project_id: str) -> bool:
    """Remove one catalogue row; True when its file went too (it was the last name of it).
    Conflict naming the cells that use it."""
    with svc.db.session() as s:
        row = s.get(Image, image_id)
        if row is None:
            raise NotFound(f"image {image_id!r} does not exist")
        if row.kind == "host":
            raise Conflict("the host image is built in and cannot be deleted")
        used = _users(s, row.id, project_id)
        if used:
            raise Conflict(f"unable to remove image {row.name!r}: it is in use by {used}")
        last = not _path_shared(s, row.path, row.id)
        path = row.path
        s.delete(row)
    if last and path:
        Path(path).unlink(missing_ok=True)
    return last


def build_host(svc: Services) -> tuple[str, str | None, str]:
    """A READY host (not in maintenance) to build on: (agent url, agent secret, host name);
    Conflict when there is none. The least loaded by cells, so builds spread."""
    with svc.db.reader() as s:
        ready = s.scalars(
            select(Host).where(
                Host.state == "READY", Host.maintenance.is_(False), Host.agent_url.is_not(None)
            )
        ).all()
        if not ready:
            raise Conflict("no READY host to build on: a build runs on a host's engine")
        counts = dict(
            s.execute(select(Cell.host_id, func.count()).group_by(Cell.host_id)).tuples().all()
        )
        host = min(ready, key=lambda h: (counts.get(h.id, 0), h.name))
        secret = (
            svc.sealer.open(host.agent_secret, AGENT_SECRET_COLUMN) if host.agent_secret else None
        )
        return str(host.agent_url), secret, host.name
