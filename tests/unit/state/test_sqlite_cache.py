"""Each pooled SQLite connection's page cache is bounded (issue 14's soak: the server's SQLite
heap grew with the database, up to 2 MB a connection for 40 connections)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from cellplane.state.db import (
    SQLITE_CACHE_KIB,
    SQLITE_STATEMENTS,
    Database,
    sqlite_cache_kib,
    sqlite_statements,
)


def _cache_size(db: Database) -> int:
    with db.engine.connect() as c:
        return int(c.execute(text("PRAGMA cache_size")).scalar_one())


def test_every_connection_gets_the_bounded_cache(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}", strict=False)  # two at once, below
    try:
        assert _cache_size(db) == -SQLITE_CACHE_KIB  # SQLite's own default is -2000
        with db.engine.connect() as a, db.engine.connect() as b:  # two pooled connections
            for conn in (a, b):
                assert conn.execute(text("PRAGMA cache_size")).scalar_one() == -SQLITE_CACHE_KIB
    finally:
        db.dispose()


def test_the_cache_size_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CELLPLANE_SQLITE_CACHE_KIB", "128")
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert _cache_size(db) == -128
    finally:
        db.dispose()


@pytest.mark.parametrize("raw", ["0", "-5", "lots"])
def test_a_bad_cache_size_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="CELLPLANE_SQLITE_CACHE_KIB"):
        sqlite_cache_kib({"CELLPLANE_SQLITE_CACHE_KIB": raw})


def test_the_statement_cache_size_comes_from_the_environment() -> None:
    assert sqlite_statements({}) == SQLITE_STATEMENTS == 32
    assert sqlite_statements({"CELLPLANE_SQLITE_STATEMENTS": "0"}) == 0  # no cache at all
    assert sqlite_statements({"CELLPLANE_SQLITE_STATEMENTS": " 128 "}) == 128


@pytest.mark.parametrize("raw", ["-1", "many", "1.5"])
def test_a_bad_statement_cache_size_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match=f"CELLPLANE_SQLITE_STATEMENTS={raw!r}"):
        sqlite_statements({"CELLPLANE_SQLITE_STATEMENTS": raw})
