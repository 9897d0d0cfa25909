"""No request path holds two database connections; threads and the pool are sized together.

Regression tests of issue 7, item 1: a burst of wrong-password logins exhausted the pool (each
request held its read session's connection while its failure path waited for a second one).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio.to_thread
import pytest
from oidc_support import Oidc

from cellplane.state.db import Database, PoolSizing, SecondConnectionError


def test_a_burst_of_failed_logins_fits_a_pool_of_one_connection_per_thread(oidc: Oidc) -> None:
    """Twelve parallel failed logins (wrong password, unknown user, throttled address) on a
    pool of three connections and no overflow: before the fix every thread held one connection
    and waited for another, and the pool timed out."""
    oidc.add_user("victim")
    tiny = Database(
        oidc.plat.svc.db.url,
        # A thread that held one connection and waited for a second would wait forever (no
        # overflow): the timeout only bounds that wait. 3 s was too short on a loaded CI machine,
        # where twelve threads' argon2 checks queue for the three connections.
        sizing=PoolSizing(api_threads=2, background_threads=1, overflow=0, timeout_s=30.0),
        strict=True,
    )
    try:
        oidc.provider.svc = dataclasses.replace(oidc.plat.svc, db=tiny)
        names = ["victim", "nobody"]
        with ThreadPoolExecutor(12) as pool:
            answers = list(
                pool.map(
                    lambda i: oidc.login_from(f"10.7.0.{i % 3}", names[i % 2], "wrong"),
                    range(36),
                )
            )
        assert set(answers) <= {"failed", "slow"} and "failed" in answers
        assert "slow" in answers  # three addresses, twelve failures each: throttled
        assert oidc.login_from("10.7.1.1", "victim") == "ok"
    finally:
        tiny.dispose()


def test_strict_mode_refuses_a_second_connection_in_one_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}", strict=True)
    try:
        with db.reader() as a:
            a.connection()
            assert db.connections_held() == 1
            with pytest.raises(SecondConnectionError), db.session():
                pass
        assert db.connections_held() == 0
        with db.session() as s:  # one after the other is fine
            s.connection()
        with db.reader() as r:
            r.connection()
    finally:
        db.dispose()


def test_pool_and_threads_are_sized_together(tmp_path: Path) -> None:
    sqlite = PoolSizing.default("sqlite:///x", {})
    pg = PoolSizing.default("postgresql+psycopg://h/db", {})
    for sizing in (sqlite, pg):
        assert sizing.pool_size == sizing.api_threads + sizing.background_threads
        assert sizing.api_threads < sizing.pool_size
    assert pg.pool_size <= 30  # well inside PostgreSQL's default max_connections
    env = {"CELLPLANE_API_THREADS": "6", "CELLPLANE_BACKGROUND_THREADS": "2"}
    custom = PoolSizing.default("sqlite:///x", env)
    assert (custom.api_threads, custom.background_threads, custom.pool_size) == (6, 2, 8)
    db = Database(f"sqlite:///{tmp_path / 'y.db'}", sizing=custom)
    try:
        assert db.engine.pool.size() == 8  # type: ignore[attr-defined]
    finally:
        db.dispose()
    with pytest.raises(ValueError):
        PoolSizing(api_threads=0, background_threads=1)


def test_the_app_bounds_its_worker_threads_below_the_pool(oidc: Oidc) -> None:
    """The lifespan sets anyio's limiter (sync routes) and the loop's default executor
    (background loops) to the sizing, so API threads never take the background reserve."""
    client = oidc.plat.client
    sizing = oidc.plat.svc.db.sizing

    async def probe() -> tuple[float, int]:
        import asyncio

        limiter = anyio.to_thread.current_default_thread_limiter()
        loop = asyncio.get_running_loop()
        executor = loop._default_executor  # type: ignore[attr-defined]
        return limiter.total_tokens, executor._max_workers

    tokens, workers = client.portal.call(probe)
    assert tokens == sizing.api_threads
    assert workers == sizing.background_threads
    assert tokens + workers <= sizing.pool_size


def test_a_core_write_connection_commits_or_rolls_back_and_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    """`Database.connection` (the token endpoint's audit write): committed when the block ends,
    rolled back on an error, and on SQLite it takes the write lock up front like `session`."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    db = Database(url, strict=True)
    try:
        with db.connection() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        with db.connection() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError), db.connection() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            raise RuntimeError("boom")
        with db.reader() as r:
            assert [v for (v,) in r.connection().exec_driver_sql("SELECT v FROM t")] == [1]
        assert db.connections_held() == 0
        other = sqlite3.connect(tmp_path / "x.db", timeout=0)
        try:
            with db.connection(), pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.execute("BEGIN IMMEDIATE")  # released with the block
            other.rollback()
        finally:
            other.close()
    finally:
        db.dispose()
