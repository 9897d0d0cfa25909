"""`Database.reader()` (a snapshot): every statement of the session sees the same committed state,
while writers go on; `snapshot=False` sees each commit as it lands (why an agent's assignments,
or a cluster's view, built from several queries, are read in a snapshot)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from cellplane.state.db import Database


def _count(s: Session) -> int:
    return int(s.execute(text("SELECT count(*) FROM t")).scalar_one())


def _insert_elsewhere(db: Database) -> None:
    """Commit a row from another thread (another connection), as a concurrent writer does."""

    def write() -> None:
        with db.session() as s:
            s.execute(text("INSERT INTO t (x) VALUES (1)"))

    worker = threading.Thread(target=write)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the writer waited for the reader"


@pytest.mark.parametrize(("snapshot", "second"), [(False, 1), (True, 0)])
def test_a_snapshot_reader_keeps_its_first_view(
    tmp_path: Path, snapshot: bool, second: int
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        with db.session() as s:
            s.execute(text("CREATE TABLE t (x INTEGER)"))
        with db.reader(snapshot=snapshot) as s:
            assert _count(s) == 0
            _insert_elsewhere(db)
            assert _count(s) == second
        with db.reader(snapshot=snapshot) as s:
            assert _count(s) == 1  # a new reader sees the commit
    finally:
        db.dispose()


def test_a_snapshot_reader_inside_a_transaction_of_its_thread_reads_that_one() -> None:
    db = Database("sqlite://")  # in memory: one connection, shared by the sessions
    try:
        with db.session() as w:
            w.execute(text("CREATE TABLE t (x INTEGER)"))
            w.execute(text("INSERT INTO t (x) VALUES (1)"))
            # No second BEGIN on the shared connection (SQLite would refuse it): the reader
            # reads in the transaction already open, its uncommitted row included.
            with db.reader(snapshot=True) as s:
                assert _count(s) == 1
    finally:
        db.dispose()
