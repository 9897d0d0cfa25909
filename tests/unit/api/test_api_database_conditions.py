"""Conditions of the database and the disk, not of the request, are answered for what they are:
a full disk 507, a database locked past its busy timeout 503 with Retry-After; never a bare 500.
The errors are real SQLite ones (a write lock held by another connection, a page limit reached)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cellplane_platform_support import Platform
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from cellplane.api import errors
from cellplane.state.db import busy_timeout_s


def _answer(exc: BaseException) -> tuple[int, dict[str, str], dict[str, object]]:
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    return r.status_code, dict(r.headers), r.json()


def _sqlite_error(tmp_path: Path, act: Callable[[str], None]) -> OperationalError:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with pytest.raises(OperationalError) as info:
        act(url)
    return info.value


def _locked(url: str) -> None:
    holder = create_engine(url).connect()
    holder.exec_driver_sql("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        waiter = create_engine(url, connect_args={"timeout": 0.05})
        with waiter.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        holder.rollback()
        holder.close()


def _full(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
        conn.exec_driver_sql("PRAGMA max_page_count=4")  # a disk with no room left
        conn.execute(text("INSERT INTO t VALUES (zeroblob(100000))"))


def test_a_database_locked_past_its_timeout_is_503_with_retry_after(tmp_path: Path) -> None:
    exc = _sqlite_error(tmp_path, _locked)
    assert "database is locked" in str(exc)
    status, headers, body = _answer(exc)
    assert status == 503 and headers["retry-after"] == "1", body
    assert str(body["type"]).endswith("/unavailable") and "retry" in str(body["detail"])


def test_a_full_database_is_507(tmp_path: Path) -> None:
    exc = _sqlite_error(tmp_path, _full)
    assert "database or disk is full" in str(exc)
    status, headers, body = _answer(exc)
    assert status == 507 and "retry-after" not in headers, body
    assert str(body["type"]).endswith("/storage-full")
    assert "data directory is full" in str(body["detail"])


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), 507),
        (OSError(errno.EACCES, "Permission denied"), 500),
        (RuntimeError("a bug"), 500),
    ],
)
def test_files_written_on_a_full_disk_are_507_other_errors_500(
    exc: BaseException, status: int
) -> None:
    got, _, body = _answer(exc)
    assert got == status, body
    assert "Permission" not in str(body) and "bug" not in str(body)  # no internals


def test_another_database_error_stays_a_500(tmp_path: Path) -> None:
    def bad_sql(url: str) -> None:
        with create_engine(url).connect() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))

    status, _, body = _answer(_sqlite_error(tmp_path, bad_sql))
    assert status == 500 and str(body["type"]).endswith("/internal"), body
    assert "no_such_table" not in str(body)


def test_busy_timeout_setting() -> None:
    assert busy_timeout_s({}) == 30.0
    assert busy_timeout_s({"CELLPLANE_DB_BUSY_TIMEOUT_S": "2.5"}) == 2.5
    for bad in ("soon", "0", "-1", "99999"):
        with pytest.raises(ValueError, match="CELLPLANE_DB_BUSY_TIMEOUT_S"):
            busy_timeout_s({"CELLPLANE_DB_BUSY_TIMEOUT_S": bad})


def _psycopg_error(kind: str) -> BaseException:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import errors as pg

    orig = {
        "no connection": psycopg.OperationalError(
            'connection is bad: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
            "No such file or directory"
        ),
        "admin shutdown": pg.AdminShutdown("terminating connection due to administrator command"),
        "disk full": pg.DiskFull("could not extend file: No space left on device"),
        "syntax": pg.SyntaxError('syntax error at or near "SELEC"'),
        "deadlock": pg.DeadlockDetected("deadlock detected"),
        "serialization": pg.SerializationFailure("could not serialize access"),
    }[kind]
    wrapper = OperationalError if kind != "syntax" else ProgrammingError
    return wrapper("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("kind", "status", "title"),
    [
        ("no connection", 503, "Database unavailable"),
        ("admin shutdown", 503, "Database unavailable"),
        ("disk full", 507, "Insufficient storage"),
        ("syntax", 500, "Internal error"),
        # Rolled back by a conflict with another transaction: retried like a busy SQLite.
        ("deadlock", 503, "Database busy"),
        ("serialization", 503, "Database busy"),
    ],
)
def test_postgresql_conditions(kind: str, status: int, title: str) -> None:
    """PostgreSQL's own errors (psycopg's classes and SQLSTATEs), as a restart or a full disk
    raises them."""
    got, headers, body = _answer(_psycopg_error(kind))
    assert (got, body["title"]) == (status, title), body
    assert ("retry-after" in headers) == (status == 503)


@pytest.fixture
def impatient(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Platform]:
    """The in-process server with a busy timeout of 0.2 s."""
    monkeypatch.setenv("CELLPLANE_DB_BUSY_TIMEOUT_S", "0.2")
    plat: Platform = request.getfixturevalue("bare")
    yield plat


def test_the_whole_server_answers_503_when_another_writer_holds_the_lock(
    impatient: Platform,
) -> None:
    """Through the real app: the change is refused with 503, and the request's audit row, which
    cannot be written either, does not turn the answer into a 500."""
    db = impatient.svc.db.url.removeprefix("sqlite:///")
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        r = impatient.client.post("/v1/projects", json={"name": "locked"}, headers=impatient.admin)
        assert r.status_code == 503, r.text
        assert r.json()["title"] == "Database busy"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = impatient.client.get("/v1/projects", headers=impatient.admin)
    assert "locked" not in [p["name"] for p in r.json()["items"]]
