"""Host bind mounts through the Docker endpoint with the unmodified docker CLI, against a real
deployment (server + agent + podman) whose operator allows one directory
(`CELLPLANE_ALLOWED_HOST_PATHS`): a container writes into it and the host reads the file; a
read-only `--mount type=bind` reads it; `inspect` reports the binds; a path outside the list
is refused naming the setting, and nothing is made."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cellplane.client import Client
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment

from .conftest import DOCKER, Endpoint, unique

pytestmark = pytest.mark.integration

SETTING = "CELLPLANE_ALLOWED_HOST_PATHS"


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("allowed")
    d.chmod(0o777)  # the container's root may be another user on the host (rootless podman)
    return d


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, allowed: Path) -> Iterator[Deployment]:
    """This module's deployment: the conftest's, its server started with `allowed` listed."""
    if DOCKER is None:
        pytest.skip("the docker CLI is not on PATH")
    archive = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    d = Deployment()
    before = os.environ.get(SETTING)
    os.environ[SETTING] = str(allowed)
    try:
        d.start()
        with d.client() as c:
            c.upload_image("busybox", archive)
            c.create_project("team-a")
        yield d
    finally:
        if before is None:
            os.environ.pop(SETTING, None)
        else:
            os.environ[SETTING] = before
        d.close()


def _cells(admin: Client) -> set[str]:
    return {c["name"] for c in admin.list_cells("team-a")["items"]}


def test_a_container_writes_into_an_allowed_host_directory(
    ep_a: Endpoint, admin: Client, allowed: Path
) -> None:
    name, reader = unique("writer"), unique("reader")
    try:
        out = ep_a.ok(
            "run", "--name", name, "-m", "32m", "-v", f"{allowed}:/data",
            "busybox", "sh", "-c", "echo written-in-the-cell > /data/out.txt && echo done",
        )  # fmt: skip
        assert "done" in out
        assert (allowed / "out.txt").read_text() == "written-in-the-cell\n"
        (info,) = json.loads(ep_a.ok("inspect", name))
        assert info["HostConfig"]["Binds"] == [f"{allowed}:/data"]
        assert info["Mounts"] == [
            {
                "Type": "bind",
                "Source": str(allowed),
                "Destination": "/data",
                "Mode": "",
                "RW": True,
                "Propagation": "rprivate",
            }
        ]
        # Read-only through --mount: the host's file is seen, and no write goes through.
        out = ep_a.ok(
            "run", "--name", reader, "-m", "32m",
            "--mount", f"type=bind,source={allowed},target=/ro,readonly",
            "busybox", "sh", "-c", "cat /ro/out.txt; touch /ro/x 2>/dev/null || echo refused",
        )  # fmt: skip
        assert "written-in-the-cell" in out and "refused" in out
        assert not (allowed / "x").exists()
        (info,) = json.loads(ep_a.ok("inspect", reader))
        mount: dict[str, Any] = info["Mounts"][0]
        assert (mount["Type"], mount["Source"], mount["Destination"], mount["RW"]) == (
            "bind",
            str(allowed),
            "/ro",
            False,
        )
    finally:
        ep_a.docker("rm", "-f", name, reader)
        (allowed / "out.txt").unlink(missing_ok=True)


def test_a_host_path_outside_the_list_is_refused_and_nothing_is_made(
    ep_a: Endpoint, admin: Client, allowed: Path
) -> None:
    before = _cells(admin)
    for args in (
        ["-v", "/etc:/host-etc"],
        ["-v", f"{allowed}2:/x"],  # a prefix of the allowed directory's name, not below it
        ["--mount", "type=bind,source=/,target=/host"],
    ):
        p = ep_a.docker("run", "-d", "-m", "32m", *args, "busybox", "true")
        assert p.returncode != 0, (args, p.stdout)
        assert "Error response from daemon" in p.stderr and SETTING in p.stderr, (args, p.stderr)
        assert "is not allowed" in p.stderr
    assert _cells(admin) == before


def test_an_allowed_path_missing_on_the_host_fails_the_container_naming_it(
    ep_a: Endpoint, allowed: Path
) -> None:
    name = unique("missing")
    missing = allowed / "not-here"
    try:
        p = ep_a.docker(
            "run", "--name", name, "-m", "32m", "-v", f"{missing}:/x", "busybox", "true"
        )
        assert p.returncode != 0, p.stdout
        assert str(missing) in p.stderr and "does not exist" in p.stderr, p.stderr
        assert not missing.exists()  # never created
    finally:
        ep_a.docker("rm", "-f", name)
