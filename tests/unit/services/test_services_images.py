"""Image archives are checked before anything is stored (`inspect_archive`, `import_image`)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cellplane_platform_support import Platform

from cellplane.errors import Conflict, ValidationFailed
from cellplane.services import images


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _oci(path: Path) -> tuple[Path, str]:
    config = b'{"architecture":"amd64","os":"linux"}'
    cfg_digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        {"schemaVersion": 2, "config": {"digest": f"sha256:{cfg_digest}"}, "layers": []}
    ).encode()
    man_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "digest": f"sha256:{man_digest}",
                    "annotations": {"org.opencontainers.image.ref.name": "demo:1"},
                }
            ],
        }
    ).encode()
    files = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": index,
        f"blobs/sha256/{man_digest}": manifest,
        f"blobs/sha256/{cfg_digest}": config,
    }
    return _tar(path, files), cfg_digest


def test_busybox_docker_archive(busybox_archive: Path) -> None:
    engine_id, tags = images.inspect_archive(busybox_archive)
    with tarfile.open(busybox_archive) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = tf.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
    assert engine_id == hashlib.sha256(config).hexdigest()
    assert tags == ["busybox:latest"]


def test_oci_archive(tmp_path: Path) -> None:
    path, cfg_digest = _oci(tmp_path / "oci.tar")
    assert images.inspect_archive(path) == (cfg_digest, ["demo:1"])


@pytest.mark.parametrize(
    ("files", "needle"),
    [
        ({"hello.txt": b"hi"}, "not an image archive"),
        ({"manifest.json": b"[]"}, "holds no image"),
        ({"manifest.json": b"{not json"}, "not a readable image archive"),
        ({"manifest.json": b'[{"Config": "missing.json"}]'}, "not a readable image archive"),
        ({"oci-layout": b"{}", "index.json": b'{"manifests": []}'}, "not a readable"),
    ],
)
def test_broken_archives_name_the_body(
    tmp_path: Path, files: dict[str, bytes], needle: str
) -> None:
    with pytest.raises(ValidationFailed) as e:
        images.inspect_archive(_tar(tmp_path / "x.tar", files))
    assert e.value.errors[0].field == "body"
    assert needle in e.value.errors[0].message


def test_not_a_tarball(tmp_path: Path) -> None:
    garbage = tmp_path / "g.tar"
    garbage.write_bytes(b"\x00\x01 definitely not a tar" * 100)
    with pytest.raises(ValidationFailed) as e:
        images.inspect_archive(garbage)
    assert e.value.errors[0].field == "body"


def _upload(plat: Platform, src: Path) -> Path:
    up = plat.svc.images_dir / ".upload-test"
    up.write_bytes(src.read_bytes())
    return up


def test_import_takes_over_the_upload(plat: Platform, busybox_archive: Path) -> None:
    data = busybox_archive.read_bytes()
    up = _upload(plat, busybox_archive)
    view = images.import_image(plat.svc, "busybox", up, hashlib.sha256(data).hexdigest(), len(data))
    assert not up.exists()
    assert view["kind"] == "archive" and view["refs"] == ["busybox:latest"]
    assert view["size_bytes"] == len(data)
    stored = images.image_content_path(plat.svc, view["id"])
    assert stored.read_bytes() == data
    # Same name again: refused, and the second upload is not left behind.
    up2 = _upload(plat, busybox_archive)
    with pytest.raises(Conflict):
        images.import_image(plat.svc, "busybox", up2, "x", len(data))
    assert not up2.exists()
    assert sorted(p.name for p in plat.svc.images_dir.iterdir()) == [f"{view['id']}.tar"]


@pytest.mark.parametrize(("name", "size", "field"), [("a/b", 10, "name"), ("ok", 0, "body")])
def test_import_refusals_remove_the_upload(
    plat: Platform, busybox_archive: Path, name: str, size: int, field: str
) -> None:
    up = _upload(plat, busybox_archive)
    with pytest.raises(ValidationFailed) as e:
        images.import_image(plat.svc, name, up, "x", size)
    assert e.value.errors[0].field == field
    assert not up.exists()
    assert [i["name"] for i in images.list_images(plat.svc)] == ["host"]


def test_default_flavors_are_seeded(plat: Platform) -> None:
    got = {
        f["name"]: (f["cpu"], f["memory_mb"], f["disk_gb"]) for f in images.list_flavors(plat.svc)
    }
    assert got == images.DEFAULT_FLAVORS
