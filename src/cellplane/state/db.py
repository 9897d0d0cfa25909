"""Database engine, sessions and migrations.

The server builds one `Database` at start-up; services open one session per change. SQLite (the
default, in the data directory) runs in WAL mode with a busy timeout so the API threads, the
controller and status reports can write concurrently; PostgreSQL is used when the URL says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "migrate"]

_MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back otherwise."""
        s = self._sessions()
        try:
            if self.is_sqlite:
                # Take the write lock up front: SQLite cannot upgrade a read lock under contention
                # without failing, and every change here reads before it writes.
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        s = self._sessions()
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    # Imported here: the long-running server migrates in a child process and never loads Alembic.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")
