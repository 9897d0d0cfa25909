"""Shared fixtures for the "cells on one host" integration tests.

A real deployment (`cellplane server` + `cellplane agent` + its own podman engine, see
`cellplane.testing.harness.Deployment`) is started once per session and shared by every module
that does not kill processes; the crash-safety module starts its own. The busybox image is uploaded
once per deployment. `cells` (function scope) creates cells with unique names, small sizes and a
command that exits promptly on SIGTERM, and deletes every cell it created when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cellplane.client import CellplaneError, Client
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.waits import SLEEP, finish, unique, wait_for

IMAGE = "busybox"
SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}
PROBLEM_FIELDS = ("type", "title", "status", "detail")

T = TypeVar("T")

# httpd in the foreground under a shell that exits at once on SIGTERM (quick deletes).
HTTPD = (
    "trap 'exit 0' TERM; mkdir -p /www && echo {text} > /www/index.html && "
    "httpd -f -p 8080 -h /www & wait"
)


def sh(client: Client, cell_id: str, script: str) -> tuple[int, str]:
    """Run `script` with sh inside the cell: (exit code, output)."""
    out = client.exec_cell(cell_id, ["sh", "-c", script])
    return int(out["exit_code"]), str(out["output"])


def http(client: Client, cell_id: str, host: str) -> str:
    """GET http://host:8080/ from inside a cell (busybox nc: its exit code says nothing)."""
    return sh(client, cell_id, f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 8080")[1]


def engine_pid(d: Deployment) -> int:
    """The pid of the agent's podman service, from its pid file (0 if none)."""
    try:
        return int((d.engine_dir / "service.pid").read_text().strip())
    except (OSError, ValueError):
        return 0


def assert_problem(resp: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The answer is an RFC 9457 problem document with `status` (and type suffix `slug`)."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/problem+json"), ctype
    body = resp.json()
    for key in PROBLEM_FIELDS:
        assert key in body, (key, body)
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["type"], str) and body["type"], body
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    return body


def event_types(cell: dict[str, Any]) -> list[str]:
    return [e["type"] for e in cell.get("events") or []]


class Cells:
    """Creates cells for one test and removes them afterwards."""

    def __init__(self, deployment: Deployment, client: Client, engine: PodmanDriver) -> None:
        self.d = deployment
        self.c = client
        self.engine = engine
        self.created: list[str] = []

    def submit(
        self,
        stem: str,
        command: list[str] | None = None,
        *,
        project: str = "default",
        **kwargs: Any,
    ) -> tuple[str, dict[str, Any]]:
        """POST a create; returns (cell id, task) without waiting."""
        name = kwargs.pop("name", None) or unique(stem)
        sizes = {} if "flavor" in kwargs else dict(SMALL)
        sizes.update(kwargs)
        task = self.c.create_cell(
            project, name, IMAGE, command=SLEEP if command is None else command, **sizes
        )
        assert task["kind"] == "CREATE_CELL", task
        cell_id = task["entity"]["id"]
        self.created.append(cell_id)
        return cell_id, task

    def run(self, stem: str, command: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Create a cell and wait until it is RUNNING; returns the cell."""
        cell_id, task = self.submit(stem, command, **kwargs)
        done = finish(self.c, task["id"])
        assert done["state"] == "COMPLETED", done
        return self.wait_state(cell_id, "RUNNING")

    def run_many(
        self, specs: list[tuple[str, list[str] | None, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Create several cells in parallel; returns them RUNNING, in order."""
        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda s: self.run(s[0], s[1], **s[2]), specs))

    def wait_state(self, cell_id: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            cell = self.c.get_cell(cell_id)
            return cell if cell["state"] == state else None

        return wait_for(check, timeout, what=f"cell {cell_id} {state}")

    def wait_gone(self, cell_id: str, timeout: float = 60.0) -> None:
        def gone() -> bool:
            try:
                self.c.get_cell(cell_id)
            except CellplaneError as e:
                if e.status == 404:
                    return True
                raise
            return False

        wait_for(gone, timeout, what=f"cell {cell_id} deleted")

    def delete(self, cell_id: str, timeout: float = 60.0) -> None:
        try:
            task = self.c.delete_cell(cell_id)
        except CellplaneError as e:
            if e.status == 404:
                return
            if e.status != 409:  # 409: already being deleted
                raise
        else:
            finish(self.c, task["id"], timeout)
        self.wait_gone(cell_id, timeout)

    def cleanup(self) -> None:
        ids = list(dict.fromkeys(self.created))
        self.created.clear()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(self.delete, ids))


@pytest.fixture(scope="package")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_archive(tmp_path_factory.mktemp("busybox"))


def start_deployment(archive: Path, agent_args: list[str] | None = None) -> Deployment:
    d = Deployment(agent_args=agent_args)
    try:
        d.start()
        with d.client() as c:
            image = c.upload_image(IMAGE, archive)
            assert image["name"] == IMAGE, image
    except BaseException:
        d.close()
        raise
    return d


@pytest.fixture(scope="package")
def deployment(busybox_archive: Path) -> Iterator[Deployment]:
    d = start_deployment(busybox_archive)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="package")
def client(deployment: Deployment) -> Iterator[Client]:
    with deployment.client() as c:
        yield c


@pytest.fixture(scope="package")
def engine(deployment: Deployment) -> Iterator[PodmanDriver]:
    driver = PodmanDriver(deployment.engine_url)
    try:
        yield driver
    finally:
        driver.close()


@pytest.fixture
def cells(deployment: Deployment, client: Client, engine: PodmanDriver) -> Iterator[Cells]:
    helper = Cells(deployment, client, engine)
    try:
        yield helper
    finally:
        # A failed crash test may have left a process down; cleanup needs both.
        if deployment.server_proc is None or deployment.server_proc.poll() is not None:
            deployment.start_server()
        if deployment.agent_proc is None or deployment.agent_proc.poll() is not None:
            deployment.start_agent()
        helper.cleanup()


@pytest.fixture
def api(deployment: Deployment) -> Iterator[httpx.Client]:
    """Raw HTTP with the admin token, for status codes and headers the SDK hides."""
    with httpx.Client(
        base_url=deployment.url,
        headers={"Authorization": f"Bearer {deployment.admin_token}"},
        timeout=30,
    ) as http:
        yield http
