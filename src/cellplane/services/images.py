"""Images and flavors: the operator's catalogue of what cells are made from and how big they are.

Called by the image and flavor routes, and by `bootstrap` (seeding). An uploaded image is checked
(docker-archive or OCI archive layout, readable config) before anything is stored; the agent fetches
the tarball through the API when a cell on its host needs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cellplane.errors import Conflict, NotFound, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.services.context import Services
from cellplane.services.schemas import FlavorCreate
from cellplane.services.views import flavor_view, image_view
from cellplane.state.models import Cell, Flavor, Image
from cellplane.validation import IMAGE_NAME, IMAGE_NAME_MSG

__all__ = [
    "DEFAULT_FLAVORS",
    "create_flavor",
    "delete_flavor",
    "delete_image",
    "get_flavor",
    "get_image",
    "image_content_path",
    "import_image",
    "inspect_archive",
    "list_flavors",
    "list_images",
]

DEFAULT_FLAVORS = {
    "SMALL": (0.5, 512, 1),
    "MEDIUM": (1.0, 1024, 2),
    "LARGE": (2.0, 4096, 4),
    "EXTRA_LARGE": (4.0, 8192, 8),
}


def list_flavors(svc: Services) -> list[dict[str, Any]]:
    with svc.db.reader() as s:
        return [flavor_view(f) for f in s.scalars(select(Flavor).order_by(Flavor.memory_mb))]


def get_flavor(svc: Services, name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        f = s.get(Flavor, name)
        if f is None:
            raise NotFound(f"flavor {name!r} does not exist")
        return flavor_view(f)


def create_flavor(svc: Services, body: FlavorCreate) -> dict[str, Any]:
    with svc.db.session() as s:
        if s.get(Flavor, body.name) is not None:
            raise Conflict(f"flavor {body.name!r} already exists")
        f = Flavor(name=body.name, cpu=body.cpu, memory_mb=body.memory_mb, disk_gb=body.disk_gb)
        s.add(f)
        return flavor_view(f)


def delete_flavor(svc: Services, name: str) -> None:
    with svc.db.session() as s:
        f = s.get(Flavor, name)
        if f is None:
            raise NotFound(f"flavor {name!r} does not exist")
        n = len(s.scalars(select(Cell.id).where(Cell.flavor == name)).all())
        if n:
            raise Conflict(f"flavor {name!r} is used by {n} cell(s)")
        s.delete(f)


def _find_image(s: Any, ref: str) -> Image:
    img = s.scalar(select(Image).where((Image.id == ref) | (Image.name == ref)))
    if img is None:
        raise NotFound(f"image {ref!r} does not exist")
    return img  # type: ignore[no-any-return]


def list_images(svc: Services) -> list[dict[str, Any]]:
    with svc.db.reader() as s:
        return [image_view(i) for i in s.scalars(select(Image).order_by(Image.id))]


def get_image(svc: Services, ref: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return image_view(_find_image(s, ref))


def image_content_path(svc: Services, ref: str) -> Path:
    with svc.db.reader() as s:
        img = _find_image(s, ref)
        if img.kind != "archive" or not img.path:
            raise NotFound(f"image {ref!r} has no content to download (kind {img.kind})")
        return Path(img.path)


def _read_json(tf: tarfile.TarFile, name: str) -> Any:
    member = tf.extractfile(name)
    if member is None:
        raise KeyError(name)
    return json.loads(member.read())


def inspect_archive(path: Path) -> tuple[str, list[str]]:
    """(image id, tags) of a docker-archive or OCI archive; ValidationFailed naming what is wrong.

    The image id is the sha256 of the image config, which is what the engine uses as its id.
    """
    try:
        with tarfile.open(path) as tf:
            names = set(tf.getnames())
            norm = {n.removeprefix("./"): n for n in names}
            if "manifest.json" in norm:
                manifest = _read_json(tf, norm["manifest.json"])
                if not isinstance(manifest, list) or not manifest:
                    raise ValueError("manifest.json holds no image")
                entry = manifest[0]
                cfg = tf.extractfile(norm[entry["Config"]])
                if cfg is None:
                    raise ValueError("config blob missing")
                digest = hashlib.sha256(cfg.read()).hexdigest()
                return digest, list(entry.get("RepoTags") or [])
            if "index.json" in norm and "oci-layout" in norm:
                index = _read_json(tf, norm["index.json"])
                desc = index["manifests"][0]
                tags = [
                    m.get("annotations", {}).get("org.opencontainers.image.ref.name")
                    for m in index["manifests"]
                ]
                algo, hexd = desc["digest"].split(":", 1)
                man = _read_json(tf, norm[f"blobs/{algo}/{hexd}"])
                cfg_digest = str(man["config"]["digest"]).split(":", 1)[1]
                return cfg_digest, [t for t in tags if t]
    except (tarfile.TarError, OSError, KeyError, ValueError, TypeError, IndexError) as e:
        raise ValidationFailed.field("body", f"not a readable image archive: {e}") from e
    raise ValidationFailed.field(
        "body", "not an image archive: expected docker-archive (manifest.json) or OCI (index.json)"
    )


def import_image(svc: Services, name: str, upload: Path, sha256: str, size: int) -> dict[str, Any]:
    """Register an uploaded tarball (already written to `upload`, which this takes over)."""
    try:
        if not IMAGE_NAME.fullmatch(name):
            raise ValidationFailed.field("name", IMAGE_NAME_MSG)
        if size == 0:
            raise ValidationFailed.field("body", "empty upload: send the tarball as the body")
        engine_id, tags = inspect_archive(upload)
        image_id = new_id("img")
        final = svc.images_dir / f"{image_id}.tar"
        with svc.db.session() as s:
            if s.scalar(select(Image.id).where(Image.name == name)):
                raise Conflict(f"an image named {name!r} already exists")
            img = Image(
                id=image_id,
                name=name,
                kind="archive",
                path=str(final),
                sha256=sha256,
                # The engine's compat API refuses a bare 64-hex id as a reference; sha256:<id> works.
                engine_ref=f"sha256:{engine_id}",
                refs=tags,
                size_bytes=size,
                created_at=utcnow(),
            )
            s.add(img)
            s.flush()
            os.replace(upload, final)
            return image_view(img)
    finally:
        upload.unlink(missing_ok=True)


def delete_image(svc: Services, ref: str) -> None:
    with svc.db.session() as s:
        img = _find_image(s, ref)
        n = len(s.scalars(select(Cell.id).where(Cell.image_id == img.id)).all())
        if n:
            raise Conflict(f"image {img.name!r} is used by {n} cell(s)")
        if img.kind == "host":
            raise Conflict("the host image is built in and cannot be deleted")
        path = img.path
        s.delete(img)
    if path:
        Path(path).unlink(missing_ok=True)
