"""The endpoint's image routes, pure parts: reference -> catalogue name, Dockerfile FROMs, build
options (refusals name the docker option), archives (retag, import of a root filesystem, config),
progress lines; and the catalogue's several names for one image (SQLite)."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from pathlib import Path
from typing import Any

import pytest
from cellplane_platform_support import Platform
from multidict import MultiDict
from sqlalchemy import select

from cellplane.dockerapi import build, image_archive
from cellplane.dockerapi.image_archive import catalog_name, dockerfile_bases
from cellplane.dockerapi.images import find
from cellplane.dockerapi.mapping import Refused
from cellplane.errors import Conflict, ValidationFailed
from cellplane.services import image_names, images
from cellplane.state.models import Project
from cellplane.testing.busybox import build_busybox_archive


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("busybox", "busybox"),
        ("busybox:latest", "busybox"),
        ("docker.io/library/busybox:latest", "busybox"),
        ("library/app:1.2", "app:1.2"),
        ("app:v1", "app:v1"),
    ],
)
def test_a_docker_reference_is_a_catalogue_name(ref: str, name: str) -> None:
    assert catalog_name(ref) == name


@pytest.mark.parametrize("ref", ["myorg/app", "localhost:5000/app", "", "-x", "app:"])
def test_a_reference_the_catalogue_cannot_name_is_refused(ref: str) -> None:
    with pytest.raises(Refused) as e:
        catalog_name(ref)
    assert e.value.status == 400 and "invalid reference" in e.value.message


def test_dockerfile_bases_skip_scratch_stages_and_substitute_args() -> None:
    text = (
        "# comment\n"
        "ARG BASE=busybox\n"
        "FROM --platform=linux/amd64 ${BASE} AS build\n"
        "RUN echo \\\n  hi\n"
        "FROM scratch\n"
        "COPY --from=build /x /x\n"
        "FROM build\n"
        "FROM app:1 as second\n"
    )
    assert dockerfile_bases(text, {}) == ["busybox", "app:1"]
    assert dockerfile_bases(text, {"BASE": "other"}) == ["other", "app:1"]
    assert dockerfile_bases("FROM scratch\nCOPY x /x\n", {}) == []


@pytest.mark.parametrize("text", ["RUN true\n", "FROM\n"])
def test_a_dockerfile_without_a_base_is_refused(text: str) -> None:
    with pytest.raises(Refused) as e:
        dockerfile_bases(text, {})
    assert "FROM" in e.value.message


def _query(**items: str) -> MultiDict[str]:
    # What the docker 28 CLI sends with its defaults.
    q: MultiDict[str] = MultiDict(
        t="app", rm="1", forcerm="0", memory="0", memswap="0", cpushares="0", cpusetcpus="",
        networkmode="default", shmsize="0", ulimits="null", buildargs="{}", labels="{}",
        cachefrom="[]", version="1",
    )  # fmt: skip
    for k, v in items.items():
        q[k] = v
    return q


def test_build_options_from_the_cli_defaults() -> None:
    opts = build.build_options(_query(buildargs='{"A": "1"}', q="1", dockerfile="sub/Dockerfile"))
    assert opts["names"] == ["app"] and opts["buildargs"] == {"A": "1"}
    assert opts["quiet"] is True and opts["nocache"] is False
    assert opts["dockerfile"] == "sub/Dockerfile"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"remote": "https://example.com/ctx.tar"}, "remote context"),
        ({"platform": "linux/s390x"}, "--platform linux/s390x"),
        ({"pull": "1"}, "--pull"),
        ({"networkmode": "host"}, "--network"),
        ({"squash": "1"}, "--squash"),
        ({"t": ""}, "-t NAME"),
        ({"dockerfile": "../Dockerfile"}, "inside the build context"),
        ({"buildargs": "[1]"}, "--build-arg"),
    ],
)
def test_build_options_refused_name_the_option(extra: dict[str, str], message: str) -> None:
    with pytest.raises(Refused) as e:
        build.build_options(_query(**extra))
    assert message in e.value.message and e.value.status == 400


def test_only_the_hosts_own_platform_is_taken() -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    for fine in ("", "linux", f"linux/{arch}"):
        build.check_platform(fine)
    with pytest.raises(Refused, match="--platform linux/s390x is not supported") as e:
        build.check_platform("linux/s390x")
    assert e.value.status == 400 and f"linux/{arch}" in e.value.message


def test_retag_rewrites_the_names_and_keeps_the_image(tmp_path: Path) -> None:
    src = build_busybox_archive(tmp_path)
    out = tmp_path / "out.tar"
    image_archive.retag(src, out, ["copy:v1"])
    assert images.inspect_archive(out) == (images.inspect_archive(src)[0], ["copy:v1"])
    assert image_archive.image_config(out)["config"]["Cmd"] == ["sh"]


def _imported(rootfs: Path, mode: str, out: Path) -> Path:
    """`out`: the image `docker import` makes of a root filesystem of one file, /etc/motd
    (written to `rootfs` with tarfile `mode`), named imp:latest."""
    with tarfile.open(rootfs, mode) as tar:  # type: ignore[call-overload]
        info = tarfile.TarInfo("etc/motd")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    image_archive.from_rootfs(rootfs, out, "imp:latest", {"Cmd": ["cat", "/etc/motd"]})
    return out


def test_combine_writes_each_image_once_under_its_names(tmp_path: Path) -> None:
    busybox = build_busybox_archive(tmp_path)
    other = _imported(tmp_path / "rootfs.tar", "w", tmp_path / "other.tar")
    out = tmp_path / "both.tar"
    image_archive.combine([(busybox, ["bb:1", "bb:2"]), (other, ["imp:latest"])], out)
    with tarfile.open(out) as tf:
        names = tf.getnames()
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert [m["RepoTags"] for m in manifest] == [["bb:1", "bb:2"], ["imp:latest"]]
    assert len(names) == len(set(names)) and "repositories" not in names
    for entry in manifest:  # every file an entry names is in the archive
        assert {entry["Config"], *entry["Layers"]} <= set(names)
    # The same image twice: its files once.
    twice = tmp_path / "twice.tar"
    image_archive.combine([(busybox, ["a:1"]), (busybox, ["b:1"])], twice)
    with tarfile.open(twice) as tf:
        assert len(tf.getnames()) == len(set(tf.getnames()))
    oci = tmp_path / "oci.tar"
    with tarfile.open(oci, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(ValueError, match=r"oci\.tar is not a docker-archive"):
        image_archive.combine([(busybox, ["a:1"]), (oci, ["o:1"])], tmp_path / "x.tar")


def test_split_gives_each_image_of_an_archive_its_own(tmp_path: Path) -> None:
    busybox = build_busybox_archive(tmp_path)
    assert image_archive.split(busybox, tmp_path) == []  # one image: kept whole
    both = tmp_path / "both.tar"
    image_archive.combine([(busybox, ["a:1"]), (busybox, ["b:1", "b:2"])], both)
    parts = image_archive.split(both, tmp_path)
    assert [tags for _, tags in parts] == [["a:1"], ["b:1", "b:2"]]
    for path, tags in parts:
        assert images.inspect_archive(path) == (images.inspect_archive(busybox)[0], tags)
    # A layer stored as a link to another's (as some docker versions save shared layers).
    linked = tmp_path / "linked.tar"
    with tarfile.open(busybox) as tf, tarfile.open(linked, "w") as out:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        layer = manifest[0]["Layers"][0]
        for info in tf:
            if info.name != "manifest.json":
                out.addfile(info, tf.extractfile(info) if info.isfile() else None)
        alias = tarfile.TarInfo("alias/layer.tar")
        alias.type, alias.linkname = tarfile.SYMTYPE, f"../{layer}"
        out.addfile(alias)
        second = {**manifest[0], "RepoTags": ["c:1"], "Layers": ["alias/layer.tar"]}
        data = json.dumps([manifest[0], second]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    _, (path, tags) = image_archive.split(linked, tmp_path)
    assert tags == ["c:1"]
    with tarfile.open(path) as tf, tarfile.open(busybox) as original:
        copied = tf.getmember("alias/layer.tar")
        assert copied.isfile() and copied.size == original.getmember(layer).size
    # An image without a name is refused, naming it, and nothing is left behind.
    nameless = tmp_path / "nameless.tar"
    image_archive.combine([(busybox, ["a:1"]), (busybox, [])], nameless)
    before = set(tmp_path.iterdir())
    with pytest.raises(ValueError, match="image 2 of the archive has no name"):
        image_archive.split(nameless, tmp_path)
    assert set(tmp_path.iterdir()) == before


def test_from_rootfs_is_a_loadable_archive(tmp_path: Path) -> None:
    out = _imported(tmp_path / "rootfs.tar.gz", "w:gz", tmp_path / "image.tar")
    engine_id, tags = images.inspect_archive(out)
    assert tags == ["imp:latest"] and len(engine_id) == 64
    config = image_archive.image_config(out)
    assert config["config"] == {"Cmd": ["cat", "/etc/motd"]}
    with tarfile.open(out) as tf:
        (manifest,) = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        layer = tf.extractfile(manifest["Layers"][0])
        assert layer is not None
        with tarfile.open(fileobj=io.BytesIO(layer.read())) as lt:
            assert lt.getnames() == ["etc/motd"]  # decompressed into a plain layer


def test_image_config_of_something_else_is_empty(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar")
    assert image_archive.image_config(junk) == {}


def test_progress_lines_are_dockers() -> None:
    assert json.loads(image_archive.json_line({"stream": "Step 1/2\n"})) == {"stream": "Step 1/2\n"}
    doc = json.loads(image_archive.error_line("boom"))
    assert doc == {"errorDetail": {"message": "boom"}, "error": "boom"}


def _row(name: str, engine: str, **over: Any) -> dict[str, Any]:
    return {"id": f"img_{name}", "name": name, "kind": "archive", "engine_ref": f"sha256:{engine}",
            "sha256": "f" * 64, "path": "/x", **over}  # fmt: skip


def test_find_by_name_forms_and_by_id_prefix() -> None:
    rows = [_row("busybox", "ab" * 32), _row("copy:v1", "ab" * 32), _row("app", "cd" * 32)]
    assert find(rows, "docker.io/library/busybox:latest") == (rows[0], True)
    assert find(rows, "copy:v1") == (rows[1], True)
    assert find(rows, "sha256:cdcd")[0] is rows[2] and find(rows, "cdcdcd")[1] is False
    assert find(rows, "abab")[0]["engine_ref"] == f"sha256:{'ab' * 32}"
    with pytest.raises(Refused) as e:
        find(rows, "nothere")
    assert e.value.status == 404 and e.value.message == "No such image: nothere"


def _upload(plat: Platform, src: Path) -> tuple[Path, str, int]:
    data = src.read_bytes()
    up = plat.svc.images_dir / f".upload-{len(list(plat.svc.images_dir.iterdir()))}"
    up.write_bytes(data)
    return up, hashlib.sha256(data).hexdigest(), len(data)


def _rows(plat: Platform) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in image_names.entries(plat.svc)}


def test_a_second_name_shares_the_file_until_the_last_name_goes(
    plat: Platform, busybox_archive: Path
) -> None:
    engine_id, names = image_names.register_archive(
        plat.svc, ["bb"], *_upload(plat, busybox_archive), "p"
    )
    assert names == ["bb"] and len(engine_id) == 64
    image_names.add_name(plat.svc, _rows(plat)["bb"]["id"], "bb:v2", "p")
    rows = _rows(plat)
    assert rows["bb"]["path"] == rows["bb:v2"]["path"]
    assert rows["bb"]["engine_ref"] == rows["bb:v2"]["engine_ref"] == f"sha256:{engine_id}"
    file = Path(str(rows["bb"]["path"]))
    assert image_names.remove_name(plat.svc, rows["bb"]["id"], "p") is False
    assert file.exists()  # bb:v2 still names it
    images.delete_image(plat.svc, "bb:v2")  # the REST delete keeps the same rule
    assert not file.exists() and "bb:v2" not in _rows(plat)


def test_a_name_in_use_is_neither_moved_nor_removed(
    plat: Platform, busybox_archive: Path, tmp_path: Path
) -> None:
    image_names.register_archive(plat.svc, ["app"], *_upload(plat, busybox_archive), "p")
    r = plat.create_cell("web", image="app")
    assert r.status_code in (201, 202), r.text
    with plat.svc.db.reader() as s:
        project = s.scalar(select(Project.id).where(Project.name == "default"))
    before = _rows(plat)["app"]
    with pytest.raises(Conflict) as e:
        image_names.remove_name(plat.svc, before["id"], project)
    assert "in use by web (project default)" in str(e.value)
    other = tmp_path / "other.tar"
    image_archive.from_rootfs(busybox_archive, other, "app:latest", {"Cmd": ["true"]})
    up = _upload(plat, other)
    with pytest.raises(Conflict) as e:
        image_names.register_archive(plat.svc, ["app"], *up, project)
    assert "in use by" in str(e.value) and not up[0].exists()
    assert _rows(plat)["app"] == before


def test_a_symlink_climbing_inside_the_archive_is_fine_but_not_out_of_it(tmp_path: Path) -> None:
    # podman's docker-archive links each layer directory's layer.tar to a top-level blob.
    def link(name: str, target: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        return info

    ok = tmp_path / "ok.tar"
    with tarfile.open(ok, "w") as tf:
        tf.addfile(tarfile.TarInfo("blob.tar"))
        tf.addfile(link("abc/layer.tar", "../blob.tar"))
    with tarfile.open(ok) as tf:
        assert images.check_members(tf, 10) == ["blob.tar", "abc/layer.tar"]
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        tf.addfile(link("abc/layer.tar", "../../etc/shadow"))
    with tarfile.open(bad) as tf, pytest.raises(ValidationFailed) as e:
        images.check_members(tf, 10)
    assert "points outside it" in e.value.errors[0].message


def test_engine_progress_reads_as_dockers() -> None:
    doc = {"stream": "STEP 2/3: RUN echo hi\nhi\n--> 1a2b3c\n"}
    assert image_archive.docker_progress(doc) == {
        "stream": "Step 2/3 : RUN echo hi\nhi\n ---> 1a2b3c\n"
    }
    assert image_archive.docker_progress({"status": "x"}) == {"status": "x"}
