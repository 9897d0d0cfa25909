"""A private PostgreSQL server for the tests that run Cellplane on PostgreSQL.

The session fixture `pg` initialises a cluster in a temporary directory owned by the `postgres`
user, starts it with `pg_ctl` listening only on a unix socket in that directory (no TCP), and
stops it and removes the directory at the end. Each test that needs an empty database asks
`pg.create_database()`; `deployment` is one server + agent + podman engine (see
`cellplane.testing.harness.Deployment`) whose state lives in its own database there, with the
busybox image uploaded. The cluster's time zone is far from UTC on purpose. Without PostgreSQL binaries the tests skip, except in CI where they fail.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cellplane.client import Client
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment
from cellplane.testing.postgres import PG_USER, PostgresServer, find_bindir

IMAGE = "busybox"


@pytest.fixture(scope="package")
def pg() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install them (scripts/install-system.sh --test)")
        pytest.skip(reason)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            pytest.fail(f"running as root needs the {PG_USER!r} user to run PostgreSQL")
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def pg_url(pg: PostgresServer) -> str:
    """The database the shared deployment uses."""
    return pg.create_database("cellplane")


@pytest.fixture(scope="package")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_busybox_archive(tmp_path_factory.mktemp("busybox"))


@pytest.fixture(scope="package")
def deployment(pg_url: str, busybox_archive: Path) -> Iterator[Deployment]:
    """Server + agent + engine whose state lives in the private PostgreSQL server."""
    d = Deployment(database_url=pg_url)
    try:
        d.start()
        with d.client() as c:
            image = c.upload_image(IMAGE, busybox_archive)
            assert image["name"] == IMAGE, image
        yield d
    finally:
        d.close()


@pytest.fixture(scope="package")
def client(deployment: Deployment) -> Iterator[Client]:
    with deployment.client() as c:
        yield c


@pytest.fixture
def api(deployment: Deployment) -> Iterator[httpx.Client]:
    """Raw HTTP with the admin token, for status codes and headers the SDK hides."""
    with httpx.Client(
        base_url=deployment.url,
        headers={"Authorization": f"Bearer {deployment.admin_token}"},
        timeout=30,
    ) as http:
        yield http
