"""Quota admission under concurrency, against a real server process (real HTTP, real database).

Twenty creates race for room for exactly five: exactly five are admitted and fifteen refused with
the quota problem, whatever the interleaving. Runs on SQLite (writers serialised by BEGIN
IMMEDIATE) and on a private PostgreSQL server (quota rows locked with SELECT ... FOR UPDATE),
reusing the PostgreSQL helper of tests/integration/postgres.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from cellplane.testing.harness import Deployment
from cellplane.testing.waits import SLEEP

pytestmark = pytest.mark.integration

PARALLEL = 20
ROOM = 5
SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}


def _pg_support() -> ModuleType:
    """tests/integration/postgres/conftest.py (PostgresServer, find_bindir), loaded by path."""
    name = "cellplane_quota_pg_support"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "postgres" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@contextlib.contextmanager
def _postgres_url() -> Iterator[str]:
    support = _pg_support()
    bindir = support.find_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install them (scripts/install-system.sh --test)")
        pytest.skip(reason)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(support.PG_USER)
        except KeyError:
            pytest.fail(f"running as root needs the {support.PG_USER!r} user to run PostgreSQL")
    server = support.PostgresServer(bindir)
    try:
        server.start()
        yield str(server.create_database("quotas"))
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(_postgres_url()) if request.param == "postgresql" else None
        d = Deployment(database_url=url)
        stack.callback(d.close)  # before the PostgreSQL server stops
        d.start()
        yield d


@pytest.fixture
def api(deployment: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=deployment.url,
        headers={"Authorization": f"Bearer {deployment.admin_token}"},
        timeout=60,
    ) as http:
        yield http


def new_project(api: httpx.Client) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    r = api.post("/v1/projects", json={"name": name})
    assert r.status_code == 201, r.text
    return name


def put_quota(api: httpx.Client, path: str, **limits: Any) -> dict[str, Any]:
    r = api.put(path, json=limits)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def race(deployment: Deployment, posts: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every (path, body) POST at once, each from its own thread and connection."""
    start = threading.Barrier(len(posts))

    def one(post: tuple[str, dict[str, Any]]) -> httpx.Response:
        with httpx.Client(
            base_url=deployment.url,
            headers={"Authorization": f"Bearer {deployment.admin_token}"},
            timeout=120,
        ) as http:
            start.wait(30)
            return http.post(post[0], json=post[1])

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(one, posts))


def split(responses: list[httpx.Response], ok: int) -> tuple[list[Any], list[Any]]:
    admitted = [r for r in responses if r.status_code == ok]
    refused = [r.json() for r in responses if r.status_code != ok]
    assert all(r.status_code in (ok, 409) for r in responses), [
        (r.status_code, r.text) for r in responses if r.status_code not in (ok, 409)
    ]
    return admitted, refused


def assert_quota_problems(problems: list[dict[str, Any]], detail: str) -> None:
    for p in problems:
        assert p["type"].endswith("/quota-exceeded"), p
        assert p["status"] == 409 and p["title"] == "Quota exceeded"
        # Every refusal saw all five admissions: the count was never stale.
        assert p["detail"] == detail, p


@pytest.mark.parametrize(
    ("limits", "detail"),
    [
        ({"cells": ROOM}, "cells quota is 5, 5 in use, this request needs 1"),
        (
            {"cpu": ROOM * SMALL["cpu"], "memory_mb": ROOM * SMALL["memory_mb"]},
            "cpu quota is 0.25, 0.25 in use, this request needs 0.05",
        ),
    ],
    ids=["cells", "cpu"],
)
def test_parallel_cell_creates_admit_exactly_the_room_left(
    deployment: Deployment, api: httpx.Client, limits: dict[str, Any], detail: str
) -> None:
    project = new_project(api)
    put_quota(api, f"/v1/projects/{project}/quota", **limits)
    path = f"/v1/projects/{project}/cells"
    posts = [
        (path, {"name": f"c{i}", "image": "host", "command": SLEEP, **SMALL})
        for i in range(PARALLEL)
    ]
    admitted, refused = split(race(deployment, posts), 202)
    assert len(admitted) == ROOM, [r.text for r in admitted]
    assert len(refused) == PARALLEL - ROOM
    assert_quota_problems(refused, f"project {project}: {detail}")
    r = api.get(f"/v1/projects/{project}/cells")
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == ROOM
    view = api.get(f"/v1/projects/{project}/quota").json()
    assert view["usage"]["cells"] == ROOM


def test_parallel_volume_creates_admit_exactly_the_room_left(
    deployment: Deployment, api: httpx.Client
) -> None:
    project = new_project(api)
    put_quota(api, f"/v1/projects/{project}/quota", volumes_gb=ROOM * 2)
    path = f"/v1/projects/{project}/volumes"
    posts = [(path, {"name": f"v{i}", "size_gb": 2}) for i in range(PARALLEL)]
    admitted, refused = split(race(deployment, posts), 201)
    assert len(admitted) == ROOM
    assert_quota_problems(
        refused, f"project {project}: volumes_gb quota is 10, 10 in use, this request needs 2"
    )
    r = api.get(f"/v1/projects/{project}/volumes")
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == ROOM


def test_parallel_creates_in_two_projects_share_the_tenant_quota(
    deployment: Deployment, api: httpx.Client
) -> None:
    """Two projects race under one tenant quota: their admissions serialise on the tenant."""
    a, b = new_project(api), new_project(api)
    tenant = api.get("/v1/tenants/default/quota").json()
    held = int(tenant["usage"]["cells"])
    limit = max(held + ROOM, int(tenant["allocated"]["cells"]))
    room = limit - held
    put_quota(api, "/v1/tenants/default/quota", cells=limit)
    try:
        posts = [
            (
                f"/v1/projects/{p}/cells",
                {"name": f"t{i}", "image": "host", "command": SLEEP, **SMALL},
            )
            for i in range(PARALLEL // 2)
            for p in (a, b)
        ]
        admitted, refused = split(race(deployment, posts), 202)
        assert len(admitted) == room
        assert_quota_problems(
            refused,
            f"tenant default: cells quota is {limit}, {limit} in use, this request needs 1",
        )
        listed = sum(len(api.get(f"/v1/projects/{p}/cells").json()["items"]) for p in (a, b))
        assert listed == room
    finally:
        put_quota(api, "/v1/tenants/default/quota")  # no limits again


def test_parallel_project_quota_sets_keep_the_split_rule(
    deployment: Deployment, api: httpx.Client
) -> None:
    """Ten projects claim a share of the tenant quota at once: only five shares fit."""
    projects = [new_project(api) for _ in range(PARALLEL // 2)]
    allocated = int(api.get("/v1/tenants/default/quota").json()["allocated"]["cells"])
    limit = allocated + ROOM
    put_quota(api, "/v1/tenants/default/quota", cells=limit)
    try:
        start = threading.Barrier(len(projects))

        def claim(project: str) -> httpx.Response:
            with httpx.Client(
                base_url=deployment.url,
                headers={"Authorization": f"Bearer {deployment.admin_token}"},
                timeout=120,
            ) as http:
                start.wait(30)
                return http.put(f"/v1/projects/{project}/quota", json={"cells": 1})

        with ThreadPoolExecutor(len(projects)) as pool:
            responses = list(pool.map(claim, projects))
        ok, conflicts = split(responses, 200)
        assert len(ok) == ROOM
        for p in conflicts:
            assert p["type"].endswith("/conflict"), p
            assert p["detail"] == (
                f"tenant default: the project quotas of cells would add up to {limit + 1}, "
                f"more than the tenant's cells quota of {limit}"
            )
        view = api.get("/v1/tenants/default/quota").json()
        assert view["allocated"]["cells"] == limit
    finally:
        for project in projects:
            put_quota(api, f"/v1/projects/{project}/quota")
        put_quota(api, "/v1/tenants/default/quota")
