"""A real podman service for the driver's integration tests, shared by the session.

The service runs in a short /tmp directory (unix socket paths are limited to 107 bytes),
loads the pure-Python busybox image, and on teardown removes every container, network and
volume the tests labelled, stops the service and deletes its directory.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cellplane.drivers import errors
from cellplane.drivers.base import ContainerSpec, ExecResult, NetworkSpec
from cellplane.drivers.engine import PodmanService
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.busybox import build_busybox_archive

IMAGE = "busybox:latest"


@dataclass
class Engine:
    service: PodmanService
    driver: PodmanDriver
    archive: Path
    run: str
    labels: dict[str, str] = field(default_factory=dict)

    def name(self, stem: str) -> str:
        return f"t{self.run}-{stem}-{uuid.uuid4().hex[:6]}"

    def spec(self, stem: str, command: list[str], **kwargs: object) -> ContainerSpec:
        values: dict[str, object] = {"image": IMAGE, "labels": dict(self.labels)}
        values.update(kwargs)
        return ContainerSpec(name=self.name(stem), command=command, **values)  # type: ignore[arg-type]

    def run_container(self, stem: str, command: list[str], **kwargs: object) -> str:
        container_id = self.driver.create(self.spec(stem, command, **kwargs))
        self.driver.start(container_id)
        return container_id

    def exec_ok(self, container_id: str, command: list[str]) -> ExecResult:
        result = self.driver.exec(container_id, command)
        assert result.exit_code == 0, result.output
        return result

    @staticmethod
    def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        return check()

    def network(self, stem: str) -> str:
        name = self.name(stem)
        self.driver.ensure_network(NetworkSpec(name, labels=self.labels))
        return name


def cleanup(driver: PodmanDriver, labels: dict[str, str]) -> None:
    for info in driver.list(labels):
        with contextlib.suppress(errors.ContainerNotFound):
            driver.remove(info.id, force=True)
    for network in driver.list_networks(labels):
        driver.remove_network(network)
    for volume in driver.list_volumes(labels):
        driver.remove_volume(volume)


def start_engine(label_run: str) -> tuple[PodmanService, PodmanDriver, Path, Path]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    data_dir = Path(tempfile.mkdtemp(prefix="cpt-", dir="/tmp"))
    service = PodmanService(data_dir / "e")
    driver = PodmanDriver(service.start())
    archive = build_busybox_archive(data_dir / "images")
    driver.load_image(archive)
    return service, driver, archive, data_dir


def stop_engine(
    service: PodmanService, driver: PodmanDriver, data_dir: Path, labels: dict[str, str]
) -> None:
    try:
        cleanup(driver, labels)
    finally:
        driver.close()
        service.destroy()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="package")
def engine() -> Iterator[Engine]:
    run = uuid.uuid4().hex[:6]
    labels = {"cellplane.test": run}
    service, driver, archive, data_dir = start_engine(run)
    try:
        yield Engine(service, driver, archive, run, labels)
    finally:
        stop_engine(service, driver, data_dir, labels)
