"""Bad input the request guard and the image upload refuse, each naming the problem and changing
nothing (issue 14). Each test failed before its fix: a text/plain body answered 422 "input
should be a valid dictionary", invalid UTF-8 a bare "error parsing the body", 70 KB of headers
were served, and an image archive with `../` members, an absolute symlink or a bomb was stored.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from cellplane_platform_support import Platform

from cellplane.errors import ValidationFailed
from cellplane.services import images
from cellplane.settings import ServerSettings

PROBLEM = "https://cellplane.dev/problems/"


def _projects(plat: Platform) -> int:
    r = plat.client.get("/v1/projects", headers=plat.admin)
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "multipart/form-data"],
)
def test_a_body_that_is_not_json_is_refused_with_415(plat: Platform, content_type: str) -> None:
    before = _projects(plat)
    r = plat.client.post(
        "/v1/projects",
        content=b'{"name": "p1"}',
        headers={**plat.admin, "Content-Type": content_type},
    )
    assert r.status_code == 415, r.text
    assert r.json()["type"] == PROBLEM + "unsupported-media-type"
    assert content_type in r.json()["detail"] and "application/json" in r.json()["detail"]
    assert _projects(plat) == before


def test_415_is_documented_where_a_json_body_is_taken(plat: Platform) -> None:
    doc = plat.client.get("/openapi.json").json()
    assert "415" in doc["paths"]["/v1/projects"]["post"]["responses"]
    assert "415" in doc["paths"]["/v1/images"]["post"]["responses"]
    assert "415" not in doc["paths"]["/identity/{tenant}/token"]["post"]["responses"]
    assert "431" in doc["paths"]["/v1/projects"]["get"]["responses"]


def test_json_with_a_charset_and_an_empty_bodied_post_still_pass(plat: Platform) -> None:
    r = plat.client.post(
        "/v1/projects",
        content=b'{"name": "p2"}',
        headers={**plat.admin, "Content-Type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text


def test_invalid_utf8_is_malformed_naming_the_byte(plat: Platform) -> None:
    before = _projects(plat)
    r = plat.client.post(
        "/v1/projects",
        content=b'{"name": "p\xff"}',
        headers={**plat.admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["type"] == PROBLEM + "malformed"
    assert "not valid UTF-8" in r.json()["detail"] and "0xff" in r.json()["detail"]
    assert _projects(plat) == before


def test_oversized_headers_are_refused_with_431(plat: Platform) -> None:
    r = plat.client.get("/v1/projects", headers={**plat.admin, "X-Big": "a" * 70_000})
    assert r.status_code == 431, r.text
    assert str(plat.svc.max_header_bytes) in r.json()["detail"]
    ok = plat.client.get("/v1/projects", headers={**plat.admin, "X-Small": "a" * 1000})
    assert ok.status_code == 200


def test_an_image_upload_that_says_it_is_not_a_tarball_is_refused_with_415(
    plat: Platform,
) -> None:
    r = plat.client.post(
        "/v1/images?name=notatar",
        content=b"{}",
        headers={**plat.admin, "Content-Type": "application/json"},
    )
    assert r.status_code == 415, r.text
    assert "application/x-tar" in r.json()["detail"]
    assert [i["name"] for i in images.list_images(plat.svc)] == ["host"]
    assert not list(plat.svc.images_dir.iterdir())  # nothing of the upload left


def test_the_limits_are_configurable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELLPLANE_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("CELLPLANE_MAX_HEADER_BYTES", "8192")
    s = ServerSettings()
    assert (s.max_body_bytes, s.max_header_bytes) == (4096, 8192)
    monkeypatch.setenv("CELLPLANE_MAX_BODY_BYTES", "10")
    with pytest.raises(ValueError, match="max_body_bytes"):
        ServerSettings()


# --- image archives -------------------------------------------------------------------------


def _tar(path: Path, members: list[tarfile.TarInfo], *, gz: bool = False) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tf:
        for info in members:
            data = b"x" * info.size if info.isfile() else None
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, size: int = 2) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ([_file("../evil")], "'../evil' points outside it"),
        ([_file("a/../../evil")], "points outside it"),
        ([_file("/etc/passwd")], "'/etc/passwd' points outside it"),
        ([_link("l", "/etc/shadow")], "symlink 'l' points outside it ('/etc/shadow')"),
        ([_link("l", "../../x")], "symlink 'l' points outside it"),
        ([_link("h", "../x", tarfile.LNKTYPE)], "hard link 'h' points outside it"),
    ],
)
def test_an_archive_escaping_itself_is_refused(
    tmp_path: Path, members: list[tarfile.TarInfo], needle: str
) -> None:
    path = _tar(tmp_path / "x.tar", [_file("manifest.json"), *members])
    with pytest.raises(ValidationFailed) as e:
        images.inspect_archive(path)
    assert e.value.errors[0].field == "body"
    assert needle in e.value.errors[0].message


def test_a_relative_symlink_inside_the_archive_is_fine(tmp_path: Path) -> None:
    path = _tar(tmp_path / "x.tar", [_file("a/b"), _link("a/c", "b"), _link("d", "a/b")])
    with tarfile.open(path) as tf:
        assert images.check_members(tf, path.stat().st_size) == ["a/b", "a/c", "d"]


def test_a_decompression_bomb_is_refused_while_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 MB of zeros in a few tens of KB: far past 32 times the upload (with a floor lowered to
    # keep the test small; the server's floor is 1 GiB).
    monkeypatch.setattr(images, "EXPANSION_FLOOR_BYTES", 1024 * 1024)
    path = tmp_path / "bomb.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        for i in range(4):
            info = tarfile.TarInfo(f"zeros-{i}")
            info.size = 16 * 1024 * 1024
            tf.addfile(info, io.BytesIO(bytes(info.size)))
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=9))
    assert path.stat().st_size < 1024 * 1024
    with pytest.raises(ValidationFailed) as e:
        images.inspect_archive(path)
    assert "decompression bomb" in e.value.errors[0].message


def test_a_huge_manifest_is_not_read_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_METADATA_BYTES", 1024)
    path = _tar(tmp_path / "x.tar", [_file("manifest.json", 4096)])
    with pytest.raises(ValidationFailed) as e:
        images.inspect_archive(path)
    assert "manifest.json is 4096 bytes" in e.value.errors[0].message
