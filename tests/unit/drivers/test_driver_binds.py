"""A host path mount (`MountSpec.host_path`) in each engine's request: podman's Docker-API body
(a `bind` mount), its libpod body (a `mounts` entry), runc's OCI bundle (a bind mount), and the
fake driver (which refuses a path that does not exist)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec, MountSpec
from cellplane.drivers.fake import FakeDriver
from cellplane.drivers.podman_bodies import compat_create_body, libpod_create_body
from cellplane.drivers.runc_config import BundlePaths, UserIds, bundle_config, bundle_volumes

MOUNTS = [
    MountSpec("cp-vol-1", "/db"),
    MountSpec("", "/srv", host_path="/srv/shared/site"),
    MountSpec("", "/cfg", read_only=True, host_path="/etc/app"),
]
SPEC = ContainerSpec(name="cp-cel-1", image="busybox", mounts=MOUNTS)


@pytest.mark.parametrize(
    ("volume", "host_path", "target"),
    [("", None, "/x"), ("v", "/h", "/x"), ("", "rel", "/x"), ("", "/h", "rel")],
)
def test_a_mount_has_one_source_and_absolute_paths(
    volume: str, host_path: str | None, target: str
) -> None:
    with pytest.raises(ValueError):
        MountSpec(volume, target, host_path=host_path)


def test_podman_compat_body_binds_the_host_paths() -> None:
    assert compat_create_body(SPEC)["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "cp-vol-1", "Target": "/db", "ReadOnly": False},
        {
            "Type": "bind",
            "Source": "/srv/shared/site",
            "Target": "/srv",
            "ReadOnly": False,
            "BindOptions": {"Propagation": "rprivate"},
        },
        {
            "Type": "bind",
            "Source": "/etc/app",
            "Target": "/cfg",
            "ReadOnly": True,
            "BindOptions": {"Propagation": "rprivate"},
        },
    ]


def test_podman_libpod_body_binds_the_host_paths() -> None:
    body = libpod_create_body(replace(SPEC, image=None, rootfs="/", command=["true"]))
    assert body["volumes"] == [{"Name": "cp-vol-1", "Dest": "/db", "Options": []}]
    assert body["mounts"] == [
        {
            "type": "bind",
            "source": "/srv/shared/site",
            "destination": "/srv",
            "options": ["rbind", "rprivate"],
        },
        {
            "type": "bind",
            "source": "/etc/app",
            "destination": "/cfg",
            "options": ["rbind", "rprivate", "ro"],
        },
    ]


def test_runc_bundle_binds_the_host_paths() -> None:
    volumes = bundle_volumes(SPEC, lambda name: Path("/engine/volumes") / name / "_data")
    assert volumes == [
        ("/engine/volumes/cp-vol-1/_data", "/db", False),
        ("/srv/shared/site", "/srv", False),
        ("/etc/app", "/cfg", True),
    ]
    paths = BundlePaths(
        rootfs="/c/rootfs",
        hosts="/c/hosts",
        resolv_conf="/c/resolv.conf",
        hostname_file="/c/hostname",
        cgroups_path="cellplane-runc/x",
        volumes=volumes,
    )
    config = bundle_config(replace(SPEC, command=["true"]), {}, UserIds(0, 0), paths)
    binds = [m for m in config["mounts"] if m["destination"] in ("/srv", "/cfg")]
    assert binds == [
        {
            "destination": "/srv",
            "type": "bind",
            "source": "/srv/shared/site",
            "options": ["rbind", "rw"],
        },
        {"destination": "/cfg", "type": "bind", "source": "/etc/app", "options": ["rbind", "ro"]},
    ]


def test_the_fake_driver_needs_the_host_path_to_exist(tmp_path: Path) -> None:
    driver = FakeDriver()
    driver.images.add("busybox")
    here = ContainerSpec(
        name="a", image="busybox", mounts=[MountSpec("", "/d", host_path=str(tmp_path))]
    )
    driver.create(here)
    assert driver.volumes == {}  # a host path is no volume
    gone = replace(here, name="b", mounts=[MountSpec("", "/d", host_path=f"{tmp_path}/no")])
    with pytest.raises(errors.PermanentDriverError, match="no such host path"):
        driver.create(gone)
    assert not (tmp_path / "no").exists()
