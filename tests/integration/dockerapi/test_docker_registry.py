"""`docker push`/`pull` through an endpoint against Debian's docker-registry on loopback, the only
registry the operator lists (CELLPLANE_REGISTRIES); any other, and Docker Hub, refused."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from cellplane.dockerapi.registry_api import MANIFEST_TYPES
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment, free_port

from .conftest import Endpoint, unique

pytestmark = pytest.mark.integration

REGISTRY = shutil.which("docker-registry")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry 2.8 on a loopback port, its own config and storage."""
    if REGISTRY is None:
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    addr = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )
    with (root / "registry.log").open("wb") as log:
        proc = subprocess.Popen(
            [REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{addr}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (root / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer in 30 s"
            time.sleep(0.2)
        yield addr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def deployment(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """This module's deployment: the server lists the test's registry (plain HTTP)."""
    archive = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    old = os.environ.get("CELLPLANE_REGISTRIES")
    os.environ["CELLPLANE_REGISTRIES"] = f"{registry};insecure"
    d = Deployment()
    try:
        d.start()
        with d.client() as c:
            c.upload_image("busybox", archive)
            c.create_project("team-a")
        yield d
    finally:
        if old is None:
            os.environ.pop("CELLPLANE_REGISTRIES", None)
        else:
            os.environ["CELLPLANE_REGISTRIES"] = old
        d.close()


@pytest.fixture(scope="module")
def ep(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Endpoint:
    return Endpoint(deployment, "team-a", deployment.admin_token, tmp_path_factory.mktemp("a"))


def test_push_remove_pull_and_run_through_the_operators_registry(
    ep: Endpoint, registry: str
) -> None:
    ref = f"{registry}/cp/{unique('bb')}:1"
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    ep.ok("tag", "busybox", ref)
    pushed = ep.ok("push", ref)
    tags = httpx.get(f"http://{registry}/v2/{repo}/tags/list", timeout=10).json()
    assert tags["tags"] == ["1"], tags
    # dockerd's words: each layer by its short id, then the manifest's digest and size, the
    # registry's own
    head = httpx.head(
        f"http://{registry}/v2/{repo}/manifests/1",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
        timeout=10,
    )
    digest, size = head.headers["Docker-Content-Digest"], head.headers["Content-Length"]
    assert f"1: digest: {digest} size: {size}" in pushed, pushed
    assert re.search(r"^[0-9a-f]{12}: Pushed$", pushed, re.M), pushed
    # docker-py reads the digest from the stream's `aux`
    lines = list(ep.py().api.push(ref, stream=True, decode=True))
    assert {"Tag": "1", "Digest": digest, "Size": int(size)} in [d.get("aux") for d in lines]

    ep.ok("rmi", ref)
    assert ref not in ep.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    pulled = ep.docker("pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert f"Digest: {digest}" in pulled.stdout, pulled.stdout  # the registry's, as docker says
    assert ref in ep.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert ep.ok("run", "--rm", ref, "echo", "pulled-and-ran").strip() == "pulled-and-ran"

    missing = ep.docker("pull", f"{registry}/{repo}:nosuchtag")
    assert missing.returncode != 0
    assert "nosuchtag" in missing.stderr, missing.stderr


_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def test_pull_all_tags_brings_every_tag_of_the_repository(ep: Endpoint, registry: str) -> None:
    repo = f"{registry}/cp/{unique('all')}"
    refs = [f"{repo}:{t}" for t in ("1", "2")]
    for ref in refs:
        ep.ok("tag", "busybox", ref)
        ep.ok("push", ref)
    ep.ok("rmi", *refs)
    try:
        other = ep.docker("pull", "--platform", "linux/s390x", "--all-tags", repo)
        assert other.returncode != 0 and "--platform linux/s390x" in other.stderr, other.stderr
        pulled = ep.docker("pull", "--platform", f"linux/{_ARCH}", "--all-tags", repo)
        assert pulled.returncode == 0, pulled.stderr
        listed = ep.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        assert set(refs) <= set(listed), listed
        assert ep.ok("run", "--rm", refs[1], "echo", "tag-2").strip() == "tag-2"
        missing = ep.docker("pull", "--all-tags", f"{registry}/cp/{unique('none')}")
        assert missing.returncode != 0 and "not found" in missing.stderr, missing.stderr
    finally:
        ep.docker("rmi", *refs)


_MANIFESTS = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def test_pull_by_digest_registers_and_runs_that_image(ep: Endpoint, registry: str) -> None:
    ref = f"{registry}/cp/{unique('dg')}:1"
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    ep.ok("tag", "busybox", ref)
    ep.ok("push", ref)
    head = httpx.head(
        f"http://{registry}/v2/{repo}/manifests/1", headers={"Accept": _MANIFESTS}, timeout=10
    )
    digest = head.headers["Docker-Content-Digest"]
    assert digest.startswith("sha256:"), head.headers
    by_digest = f"{registry}/{repo}@{digest}"
    ep.ok("rmi", ref)
    try:
        pulled = ep.docker("pull", by_digest)
        assert pulled.returncode == 0, pulled.stderr
        assert f"Digest: {digest}" in pulled.stdout, pulled.stdout
        listed = ep.ok("images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}")
        assert f"{registry}/{repo} <none> {digest}" in listed.splitlines(), listed
        inspected = json.loads(ep.ok("image", "inspect", by_digest))[0]
        # The same image under other names (busybox it was pushed from) keeps those as tags.
        assert inspected["RepoDigests"] == [by_digest], inspected
        assert "busybox:latest" in inspected["RepoTags"], inspected
        assert not [t for t in inspected["RepoTags"] if "@" in t], inspected
        assert ep.ok("run", "--rm", by_digest, "echo", "by-digest").strip() == "by-digest"
        # A digest the registry does not have is the engine's error; a malformed one is refused.
        missing = ep.docker("pull", f"{registry}/{repo}@sha256:{'0' * 64}")
        assert missing.returncode != 0 and "0" * 12 in missing.stderr, missing.stderr
        bad = ep.docker("pull", f"{registry}/{repo}@sha256:abc")
        assert bad.returncode != 0, bad
        images = ep.ok("images", "--digests", "--format", "{{.Digest}}")
        assert "0" * 64 not in images
    finally:
        ep.docker("rmi", by_digest)


def test_other_registries_and_docker_hub_are_refused(ep: Endpoint, registry: str) -> None:
    other = ep.docker("pull", "127.0.0.2:5999/app:1")
    assert other.returncode != 0
    assert "registry 127.0.0.2:5999 is not allowed on this endpoint" in other.stderr
    assert registry in other.stderr
    hub = ep.docker("pull", "busybox")
    assert hub.returncode != 0
    assert "Docker Hub is not allowed" in hub.stderr and registry in hub.stderr, hub.stderr
    push = ep.docker("push", "127.0.0.2:5999/app:1")
    assert push.returncode != 0
    assert "registry 127.0.0.2:5999 is not allowed" in push.stderr, push.stderr
    names = ep.ok("images", "--format", "{{.Repository}}")
    assert "127.0.0.2" not in names
