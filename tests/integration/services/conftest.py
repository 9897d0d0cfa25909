"""One real deployment (server + agent + podman, `cellplane.testing.harness.Deployment`) shared
by the service integration tests, with busybox uploaded once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cellplane.client import Client
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    archive: Path = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    d = Deployment()
    try:
        d.start()
        with d.client() as c:
            assert c.upload_image("busybox", archive)["name"] == "busybox"
        yield d
    finally:
        d.close()


@pytest.fixture(scope="module")
def client(deployment: Deployment) -> Iterator[Client]:
    with deployment.client() as c:
        yield c


@pytest.fixture(scope="module")
def engine(deployment: Deployment) -> Iterator[PodmanDriver]:
    driver = PodmanDriver(deployment.engine_url)
    try:
        yield driver
    finally:
        driver.close()
