"""One real deployment (server + agent + podman) shared by the cluster integration tests.

The tests deploy ZooKeeper, etcd and Redis from Debian's packages on the `host` image; they
are skipped when those packages are not installed. A test catalog folder (the `canary` role)
is added through CELLPLANE_CATALOG_PATH before the server starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cellplane.clusters.catalog import CATALOG_PATH_ENV
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import Deployment

HERE = Path(__file__).parent


class Api:
    """A tiny JSON client of the cluster routes (the SDK functions are tested elsewhere)."""

    def __init__(self, d: Deployment) -> None:
        self.d = d
        self.http = httpx.Client(
            base_url=d.url, headers={"Authorization": f"Bearer {d.admin_token}"}, timeout=60
        )

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(path, json=body)

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def wait(self, cluster_id: str, until: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        c: dict[str, Any] = {}
        while time.monotonic() < deadline:
            c = self.get(f"/v1/clusters/{cluster_id}")
            if until(c):
                return c
            time.sleep(0.3)
        raise AssertionError(f"cluster not as expected after {timeout} s: {c}")

    def settled(self, cluster_id: str, timeout: float = 120) -> Any:
        return self.wait(
            cluster_id, lambda c: c["task"]["state"] in ("COMPLETED", "ERROR"), timeout
        )

    def create(self, name: str, distro: str | None, spec: Any = None, **extra: Any) -> str:
        body = {"name": name, "distro": distro, **extra}
        if spec is not None:
            body["spec"] = spec
        r = self.post("/v1/projects/default/clusters", body)
        assert r.status_code == 202, r.text
        return str(r.json()["entity"]["id"])

    def exec(self, cell_id: str, command: list[str]) -> tuple[int, str]:
        r = self.post(f"/v1/cells/{cell_id}/exec", {"command": command})
        r.raise_for_status()
        data = r.json()
        return int(data["exit_code"]), str(data["output"])

    def sh(self, cell_id: str, script: str) -> tuple[int, str]:
        return self.exec(cell_id, ["/bin/bash", "-c", script])

    def delete(self, cluster_id: str) -> None:
        r = self.http.delete(f"/v1/clusters/{cluster_id}")
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.http.get(f"/v1/clusters/{cluster_id}").status_code == 404:
                return
            time.sleep(0.3)
        raise AssertionError("cluster not deleted")

    def node_cells(self, c: dict[str, Any]) -> dict[str, str]:
        return {n["name"]: n["cell"] for n in c["nodes"]}

    def container(self, cell_id: str) -> str:
        return str(self.get(f"/v1/cells/{cell_id}")["container_id"])


def need(*paths: str) -> None:
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install the distro's packages)")


def small_group(name: str, roles: list[str], n: int, **extra: Any) -> dict[str, Any]:
    """A node group sized explicitly (one host in tests: no instancePerHost)."""
    return {
        "name": name,
        "roles": roles,
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": 512,
        "storage": {"sizeGB": 1},
        **extra,
    }


@pytest.fixture(scope="package")
def deployment() -> Iterator[Deployment]:
    old = os.environ.get(CATALOG_PATH_ENV)
    os.environ[CATALOG_PATH_ENV] = str(HERE / "catalog")
    try:
        with Deployment() as d:
            yield d
    finally:
        if old is None:
            os.environ.pop(CATALOG_PATH_ENV, None)
        else:
            os.environ[CATALOG_PATH_ENV] = old


@pytest.fixture(scope="package")
def api(deployment: Deployment) -> Iterator[Api]:
    a = Api(deployment)
    yield a
    a.http.close()


@pytest.fixture(scope="package")
def engine(deployment: Deployment) -> PodmanDriver:
    return PodmanDriver(deployment.engine_url)
