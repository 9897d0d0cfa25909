"""`Database.reader()` (a snapshot) on a real PostgreSQL: every statement of the session sees
the state of its first (REPEATABLE READ) while another connection commits; `snapshot=False` (READ
COMMITTED) sees the commit at once; and the snapshot does not outlive its session (the pooled
connection goes back at the server's default level)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from cellplane.state.db import Database
from cellplane.testing.postgres import PostgresServer

pytestmark = pytest.mark.integration


def _count(s: Session) -> int:
    return int(s.execute(text("SELECT count(*) FROM t")).scalar_one())


def _insert(db: Database) -> None:
    with db.session() as w:
        w.execute(text("INSERT INTO t (x) VALUES (1)"))


@pytest.mark.parametrize(("snapshot", "second"), [(False, 1), (True, 0)])
def test_a_snapshot_reader_keeps_its_first_view_on_postgresql(
    pg: PostgresServer, snapshot: bool, second: int
) -> None:
    db = Database(pg.create_database("snap"))
    try:
        with db.session() as s:
            s.execute(text("CREATE TABLE t (x INTEGER)"))
        with db.reader(snapshot=snapshot) as s:
            assert _count(s) == 0
            writer = threading.Thread(target=_insert, args=(db,))  # another connection
            writer.start()
            writer.join(timeout=30)
            assert not writer.is_alive(), "the writer waited for the reader"
            assert _count(s) == second
            level = s.execute(text("SHOW transaction_isolation")).scalar_one()
            assert level == ("repeatable read" if snapshot else "read committed")
        # The next session, maybe on the same connection: back at the server's default.
        with db.reader(snapshot=False) as s:
            assert _count(s) == 1
            assert s.execute(text("SHOW transaction_isolation")).scalar_one() == "read committed"
    finally:
        db.dispose()
