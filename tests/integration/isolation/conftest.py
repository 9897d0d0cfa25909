"""Fixtures of the isolation-class tests: one real deployment (server + agent + its podman,
with gVisor's runsc offered as the `sandbox` class) for the whole package.

Skipped, saying why, only when runsc is not installed on the machine (`.ci/run` and
`scripts/install-system.sh` install it, so they run there).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cellplane.client import TERMINAL_TASK_STATES, CellplaneError, Client
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.waits import SLEEP, unique, wait_for

IMAGE = "busybox"
SMALL: dict[str, Any] = {"cpu": 0.1, "memory_mb": 64}

T = TypeVar("T")

if shutil.which("runsc") is None:
    pytest.skip(
        "gVisor's runsc is not installed (apt-get install runsc; CI installs it)",
        allow_module_level=True,
    )


class Cells:
    """Creates cells for one test (sandboxed unless said otherwise) and deletes them after."""

    def __init__(self, client: Client) -> None:
        self.c = client
        self.created: list[str] = []

    def submit(
        self, stem: str, command: list[str] | None = None, **kwargs: Any
    ) -> tuple[str, dict[str, Any]]:
        project = kwargs.pop("project", "default")
        image = kwargs.pop("image", IMAGE)
        kwargs.setdefault("isolation", "sandbox")
        sizes = {**SMALL, **kwargs}
        task = self.c.create_cell(
            project, unique(stem), image, command=SLEEP if command is None else command, **sizes
        )
        self.created.append(task["entity"]["id"])
        return task["entity"]["id"], task

    def finish(self, task_id: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            task = self.c.get_task(task_id)
            return task if task["state"] in TERMINAL_TASK_STATES else None

        return wait_for(done, 90.0, f"task {task_id}")

    def run(self, stem: str, command: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        cell_id, task = self.submit(stem, command, **kwargs)
        done = self.finish(task["id"])
        assert done["state"] == "COMPLETED", done
        return self.wait_state(cell_id, "RUNNING")

    def wait_state(self, cell_id: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cell = self.c.get_cell(cell_id)
            return cell if cell["state"] == state else None

        return wait_for(check, timeout, f"cell {cell_id} {state}")

    def exec(self, cell_id: str, *command: str) -> tuple[int, str]:
        answer = self.c.exec_cell(cell_id, list(command))
        return int(answer["exit_code"]), str(answer["output"])

    def cleanup(self) -> None:
        for cell_id in reversed(self.created):
            try:
                task = self.c.delete_cell(cell_id)
                self.finish(task["id"])
            except CellplaneError as e:
                if e.status not in (404, 409):
                    raise
        for cell_id in self.created:
            wait_for(lambda cid=cell_id: _gone(self.c, cid), 60.0, f"cell {cell_id} deleted")
        self.created.clear()


def _gone(client: Client, cell_id: str) -> bool:
    try:
        client.get_cell(cell_id)
    except CellplaneError as e:
        return e.status == 404
    return False


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    archive: Path = build_busybox_archive(tmp_path_factory.mktemp("busybox"))
    d = Deployment()
    try:
        d.start()
        with d.client() as c:
            c.upload_image(IMAGE, archive)
        yield d
    finally:
        d.close()


@pytest.fixture(scope="package")
def client(deployment: Deployment) -> Iterator[Client]:
    with deployment.client() as c:
        yield c


@pytest.fixture
def cells(client: Client) -> Iterator[Cells]:
    helper = Cells(client)
    try:
        yield helper
    finally:
        helper.cleanup()
