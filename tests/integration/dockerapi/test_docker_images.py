"""Images and builds through a project's Docker-compatible endpoint, against a real deployment
(server + agent + podman), with the unmodified docker CLI and docker-py: save/load, tag, inspect,
history, rmi (refused while a container uses the image), import of a root filesystem, `docker
build` (FROM a catalogue image, run the result), a failing build, and who may change the
catalogue.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from cellplane.client import Client
from cellplane.testing.busybox import BUSYBOX_PATH
from cellplane.testing.harness import Deployment

from .conftest import SLEEP, Endpoint, unique, user_token

pytestmark = pytest.mark.integration


def _names(admin: Client) -> set[str]:
    return {str(i["name"]) for i in admin.list_images()["items"]}


def test_save_load_tag_inspect_history_and_rmi(
    ep_a: Endpoint, admin: Client, tmp_path: Path
) -> None:
    name = unique("copy")
    ep_a.ok("tag", "busybox", f"{name}:v1")
    try:
        assert f"{name}:v1" in _names(admin)  # a catalogue image like any other
        listed = ep_a.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", f"{name}*")
        assert listed.split()[0] == f"{name}:v1", listed
        archive = tmp_path / "saved.tar"
        ep_a.ok("save", "-o", str(archive), f"{name}:v1")
        ep_a.ok("rmi", f"{name}:v1")
        assert f"{name}:v1" not in _names(admin)
        assert "busybox" in _names(admin)  # the other name of the same file stays usable
        loaded = ep_a.ok("load", "-i", str(archive))
        assert f"Loaded image: {name}:v1" in loaded
        (info,) = json.loads(ep_a.ok("image", "inspect", f"{name}:v1"))
        assert set(info["RepoTags"]) == {f"{name}:v1", "busybox:latest"}  # one image, two names
        assert info["Config"]["Cmd"] == ["sh"] and info["Config"]["WorkingDir"] == "/"
        assert info["Id"].startswith("sha256:") and info["Size"] > 0
        history = ep_a.ok("history", "--no-trunc", "--format", "{{.CreatedBy}}", f"{name}:v1")
        assert "cellplane busybox" in history
        dangling = ep_a.ok("images", "-q", "--filter", "dangling=true")
        assert dangling.strip() == ""
        # A container uses it: rmi is refused, naming the container, and changes nothing.
        box = unique("user")
        ep_a.ok("run", "-d", "--name", box, "-m", "16m", f"{name}:v1", *SLEEP)
        try:
            p = ep_a.docker("rmi", f"{name}:v1")
            assert p.returncode != 0 and box in p.stderr and "in use" in p.stderr, p.stderr
            assert f"{name}:v1" in _names(admin)
        finally:
            ep_a.docker("rm", "-f", box)
        ep_a.ok("rmi", f"{name}:v1")
        gone = ep_a.docker("image", "inspect", f"{name}:v1")
        assert gone.returncode != 0 and "No such image" in gone.stderr
    finally:
        ep_a.docker("rmi", f"{name}:v1")


def _rootfs_tar(path: Path) -> None:
    with tarfile.open(path, "w") as tar:
        tar.add(str(BUSYBOX_PATH), arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        data = b"from-import\n"
        info = tarfile.TarInfo("etc/motd")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def test_import_a_root_filesystem_and_run_it(ep_a: Endpoint, tmp_path: Path) -> None:
    name, box = unique("imported"), unique("imp")
    rootfs = tmp_path / "rootfs.tar"
    _rootfs_tar(rootfs)
    try:
        out = ep_a.ok("import", "--change", 'CMD ["/bin/busybox", "cat", "/etc/motd"]',
                      str(rootfs), name)  # fmt: skip
        assert out.strip().startswith("sha256:")
        p = ep_a.docker("run", "--name", box, "-m", "16m", name)
        assert (p.returncode, p.stdout) == (0, "from-import\n"), p.stderr
    finally:
        ep_a.docker("rm", "-f", box)
        ep_a.docker("rmi", name)


def test_save_of_several_images_loads_back_as_several(ep_a: Endpoint, tmp_path: Path) -> None:
    """`docker save A B` writes both images into one archive; `docker load` of it registers
    each under its own names, and each runs."""
    imported, tagged, box = unique("multi-imp"), unique("multi-bb"), unique("multi-run")
    rootfs = tmp_path / "rootfs.tar"
    _rootfs_tar(rootfs)
    ep_a.ok("import", "--change", 'CMD ["/bin/busybox", "cat", "/etc/motd"]', str(rootfs),
            f"{imported}:v1")  # fmt: skip
    ep_a.ok("tag", "busybox", f"{tagged}:v1")
    try:
        ids = {n: ep_a.ok("image", "inspect", "-f", "{{.Id}}", n).strip()
               for n in (f"{imported}:v1", f"{tagged}:v1")}  # fmt: skip
        assert len(set(ids.values())) == 2
        archive = tmp_path / "both.tar"
        ep_a.ok("save", "-o", str(archive), f"{imported}:v1", f"{tagged}:v1", f"{tagged}:v1")
        with tarfile.open(archive) as tf:
            manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert [m["RepoTags"] for m in manifest] == [[f"{imported}:v1"], [f"{tagged}:v1"]]
        ep_a.ok("rmi", f"{imported}:v1", f"{tagged}:v1")
        loaded = ep_a.ok("load", "-i", str(archive))
        assert f"Loaded image: {imported}:v1" in loaded and f"Loaded image: {tagged}:v1" in loaded
        for name, image_id in ids.items():
            assert ep_a.ok("image", "inspect", "-f", "{{.Id}}", name).strip() == image_id
        p = ep_a.docker("run", "--name", box, "-m", "16m", f"{imported}:v1")
        assert (p.returncode, p.stdout) == (0, "from-import\n"), p.stderr
    finally:
        ep_a.docker("rm", "-f", box)
        ep_a.docker("rmi", f"{imported}:v1", f"{tagged}:v1")


def _context(path: Path, dockerfile: str) -> Path:
    path.mkdir()
    (path / "Dockerfile").write_text(dockerfile)
    (path / "greeting.txt").write_text("from-the-context\n")
    return path


def test_docker_build_then_run_what_it_baked(ep_a: Endpoint, admin: Client, tmp_path: Path) -> None:
    name, box = unique("built"), unique("run-built")
    ctx = _context(
        tmp_path / "ctx",
        "FROM busybox\n"
        "ARG WHO=nobody\n"
        "COPY greeting.txt /greeting.txt\n"
        'RUN echo "baked for $WHO" > /baked.txt\n'
        'CMD ["sh", "-c", "cat /baked.txt /greeting.txt"]\n',
    )
    try:
        p = ep_a.docker("build", "-t", name, "--build-arg", "WHO=team-a", str(ctx), timeout=300)
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert "Step 1/" in p.stdout and f"Successfully tagged {name}:latest" in p.stdout
        assert name in _names(admin)
        run = ep_a.docker("run", "--name", box, "-m", "16m", name)
        assert (run.returncode, run.stdout) == (0, "baked for team-a\nfrom-the-context\n"), run
    finally:
        ep_a.docker("rm", "-f", box)
        ep_a.docker("rmi", name)


def test_a_failing_build_is_a_docker_error(ep_a: Endpoint, admin: Client, tmp_path: Path) -> None:
    name = unique("broken")
    ctx = _context(tmp_path / "ctx", "FROM busybox\nRUN echo about-to-fail; exit 7\n")
    p = ep_a.docker("build", "-t", name, str(ctx), timeout=300)
    assert p.returncode != 0 and "about-to-fail" in p.stdout, (p.stdout, p.stderr)
    assert "exit" in p.stderr.lower() or "error" in p.stderr.lower(), p.stderr
    assert name not in _names(admin)
    # No registry: a FROM the catalogue lacks is refused before anything is built.
    ctx2 = _context(tmp_path / "ctx2", "FROM alpine:3.19\nRUN true\n")
    p = ep_a.docker("build", "-t", name, str(ctx2))
    assert p.returncode != 0 and "FROM alpine:3.19: no such image" in p.stderr, p.stderr
    p = ep_a.docker("build", "--platform", "linux/s390x", "-t", name, str(ctx2))
    assert p.returncode != 0 and "--platform linux/s390x is not supported" in p.stderr


def test_docker_py_builds_and_lists(ep_a: Endpoint, tmp_path: Path) -> None:
    name = unique("pybuilt")
    ctx = _context(tmp_path / "ctx", 'FROM busybox\nLABEL made.by=docker-py\nCMD ["true"]\n')
    client = ep_a.py()
    try:
        image, logs = client.images.build(path=str(ctx), tag=f"{name}:1", labels={"x": "y"})
        assert f"{name}:1" in image.tags
        assert any("Step" in str(line.get("stream", "")) for line in logs)
        assert image.labels.get("made.by") == "docker-py" and image.labels.get("x") == "y"
        assert [i.tags for i in client.images.list(name=name)] == [[f"{name}:1"]]
    finally:
        client.api.remove_image(f"{name}:1")
        client.close()


def test_a_project_member_cannot_change_the_catalogue(
    ep_a: Endpoint, deployment: Deployment, admin: Client, tmp_path: Path
) -> None:
    token = user_token(deployment, admin, unique("mia"), "project-member", "team-a")
    mia = Endpoint(deployment, "team-a", token, tmp_path / "mia")
    assert "busybox" in mia.ok("images", "--format", "{{.Repository}}")  # reading is allowed
    name = unique("nope")
    p = mia.docker("tag", "busybox", name)
    assert p.returncode != 0 and "'images:write' permission" in p.stderr, p.stderr
    p = mia.docker("rmi", "busybox")
    assert p.returncode != 0 and "'images:write' permission" in p.stderr
    assert name not in _names(admin) and "busybox" in _names(admin)
