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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cellplane.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.services.context import Services
from cellplane.services.schemas import FlavorCreate
from cellplane.services.views import flavor_view, image_view
from cellplane.state.models import Cell, Flavor, Image
from cellplane.validation import IMAGE_NAME, IMAGE_NAME_MSG

__all__ = [
    "DEFAULT_FLAVORS",
    "MAX_EXPANSION",
    "check_members",
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
    "save_upload",
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


#: What an uploaded archive may hold: members, the metadata files read here, and how far a
#: compressed archive may expand (a decompression bomb is refused while it is read, not after).
MAX_MEMBERS = 100_000
MAX_METADATA_BYTES = 4 * 1024 * 1024
MAX_EXPANSION = 32  # unpacked size over upload size, above the floor
EXPANSION_FLOOR_BYTES = 1024**3


def _read_json(tf: tarfile.TarFile, name: str) -> Any:
    info = tf.getmember(name)
    if info.size > MAX_METADATA_BYTES:
        raise ValueError(f"{name} is {info.size} bytes, more than {MAX_METADATA_BYTES}")
    member = tf.extractfile(info)
    if member is None:
        raise KeyError(name)
    return json.loads(member.read())


def _escapes(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith("/") or ".." in parts


def _link_escapes(name: str, target: str) -> bool:
    """A symlink's target, resolved from the link's own directory, leaves the archive."""
    if target.startswith("/"):
        return True
    depth = 0
    for part in name.replace("\\", "/").split("/")[:-1] + target.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def check_members(tf: tarfile.TarFile, upload_size: int) -> list[str]:
    """The archive's member names, read once, header by header; ValidationFailed for a member
    that escapes it (`../`, an absolute path, a link pointing outside) and for an archive that
    unpacks to more than `MAX_EXPANSION` times its size (past a floor) or holds too many files."""
    limit = max(EXPANSION_FLOOR_BYTES, MAX_EXPANSION * upload_size)
    names: list[str] = []
    total = 0
    for info in tf:  # the next header is read only after this one was checked
        if len(names) >= MAX_MEMBERS:
            raise ValidationFailed.field("body", f"the archive holds more than {MAX_MEMBERS} files")
        if _escapes(info.name):
            raise ValidationFailed.field(
                "body", f"the archive's member {info.name!r} points outside it (../ or absolute)"
            )
        # A relative symlink may climb within the archive (docker-archives written by podman link
        # `ID/layer.tar` to `../DIGEST.tar`), never out of it.
        if info.issym() and _link_escapes(info.name, info.linkname):
            raise ValidationFailed.field(
                "body",
                f"the archive's symlink {info.name!r} points outside it ({info.linkname!r})",
            )
        if info.islnk() and _escapes(info.linkname):
            raise ValidationFailed.field(
                "body", f"the archive's hard link {info.name!r} points outside it"
            )
        total += max(0, info.size)
        if total > limit:
            raise ValidationFailed.field(
                "body",
                f"the archive unpacks to more than {limit} bytes ({MAX_EXPANSION} times its "
                f"{upload_size} bytes): refused as a decompression bomb",
            )
        names.append(info.name)
    return names


def inspect_archive(path: Path) -> tuple[str, list[str]]:
    """(image id, tags) of a docker-archive or OCI archive; ValidationFailed naming what is wrong.

    The image id is the sha256 of the image config, which is what the engine uses as its id.
    The archive's own members are checked first (`check_members`); the layers inside are the
    engine's to unpack.
    """
    try:
        with tarfile.open(path) as tf:
            names = set(check_members(tf, path.stat().st_size))
            norm = {n.removeprefix("./"): n for n in names}
            if "manifest.json" in norm:
                manifest = _read_json(tf, norm["manifest.json"])
                if not isinstance(manifest, list) or not manifest:
                    raise ValueError("manifest.json holds no image")
                entry = manifest[0]
                cfg_info = tf.getmember(norm[entry["Config"]])
                if cfg_info.size > MAX_METADATA_BYTES:
                    raise ValueError(f"the image config is larger than {MAX_METADATA_BYTES}")
                cfg = tf.extractfile(cfg_info)
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


def _too_large(svc: Services) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the image is larger than this server's limit of {svc.max_image_bytes} bytes"
    )


async def save_upload(
    svc: Services, chunks: AsyncIterator[bytes], declared: str = ""
) -> tuple[Path, str, int]:
    """Write an upload to a private file of the images directory, under the server's limit
    (`max_image_bytes`, checked on the declared Content-Length first): the file, its sha256 and
    size, for `import_image`. Too large, or cut short: nothing is kept."""
    upload = svc.images_dir / f".upload-{new_id('up')}"
    h = hashlib.sha256()
    size = 0
    fd = os.open(upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            if declared.isdigit() and int(declared) > svc.max_image_bytes:
                raise _too_large(svc)
            async for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                if size > svc.max_image_bytes:
                    raise _too_large(svc)
                f.write(chunk)
    except BaseException:
        upload.unlink(missing_ok=True)
        raise
    return upload, h.hexdigest(), size


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
        # Another name of the same image (`docker tag`) keeps the file.
        shared = s.scalar(select(Image.id).where(Image.path == path, Image.id != img.id).limit(1))
        s.delete(img)
    if path and not shared:
        Path(path).unlink(missing_ok=True)
