"""The pure-Python busybox docker-archive: layout, determinism, caching."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from cellplane.testing import busybox


def test_archive_layout(tmp_path: Path) -> None:
    archive = busybox.build_busybox_archive(tmp_path, tag="demo/bb:1.0")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        (entry,) = manifest
        assert entry["RepoTags"] == ["demo/bb:1.0"]
        config = json.loads(tar.extractfile(entry["Config"]).read())  # type: ignore[union-attr]
        layer_bytes = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
        repositories = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
    digest = hashlib.sha256(layer_bytes).hexdigest()
    assert config["rootfs"]["diff_ids"] == [f"sha256:{digest}"]
    assert (
        entry["Config"]
        == hashlib.sha256(
            json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        + ".json"
    )
    assert repositories == {"demo/bb": {"1.0": digest}}
    layer_path = tmp_path / "layer.tar"
    layer_path.write_bytes(layer_bytes)
    with tarfile.open(layer_path) as layer:
        members = {m.name: m for m in layer.getmembers()}
    assert members["bin/busybox"].size == busybox.BUSYBOX_PATH.stat().st_size
    for applet in ("sh", "sleep", "cat", "wget", "nc", "httpd", "hostname"):
        assert members[f"bin/{applet}"].issym() and members[f"bin/{applet}"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777


def test_archive_is_cached_by_content(tmp_path: Path) -> None:
    first = busybox.build_busybox_archive(tmp_path)
    stamp = first.stat().st_mtime_ns
    again = busybox.build_busybox_archive(tmp_path)
    assert again == first and again.stat().st_mtime_ns == stamp
    other_tag = busybox.build_busybox_archive(tmp_path, tag="other:latest")
    assert other_tag != first


def test_archive_is_deterministic(tmp_path: Path) -> None:
    one = busybox.build_busybox_archive(tmp_path / "a")
    two = busybox.build_busybox_archive(tmp_path / "b")
    assert one.read_bytes() == two.read_bytes()


def test_tag_without_version_and_with_registry_port(tmp_path: Path) -> None:
    archive = busybox.build_busybox_archive(tmp_path, tag="localhost:5000/bb")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["localhost:5000/bb:latest"]


def test_missing_binary_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(busybox.BusyboxMissingError, match="busybox-static"):
        busybox.ensure_busybox_static(tmp_path / "busybox")
