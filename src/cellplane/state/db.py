"""Database engine, sessions and migrations.

The server builds one `Database` at start-up; services open one session per change. SQLite (the
default, in the data directory) runs in WAL mode with a busy timeout so the API threads, the
controller and status reports can write concurrently; PostgreSQL is used when the URL says so.

Connections and threads are sized together (`PoolSizing`): every thread that touches the
database holds at most one connection at a time (a request path never opens a second session
while it holds one), the API runs on at most ``api_threads`` worker threads (anyio's default
limiter, set in the app's lifespan) and the background loops on at most ``background_threads``
(the event loop's default executor), and the pool has a connection for each of them plus a small
overflow for the cluster executor's worker threads. So no thread ever waits for a connection
while holding one, and the background loops never queue behind a burst of API requests.

``CELLPLANE_DB_STRICT=1`` (the test suite sets it) makes the one-connection-per-thread rule
loud: a thread that checks out a second connection while it holds one gets
`SecondConnectionError` instead of a possible deadlock under load.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cellplane.state import networks as _networks  # noqa: F401  (registers the default-network hook)
from cellplane.state.leadership import begin_fenced, check_fence, current_fence

__all__ = [
    "Database",
    "DatabaseNewerThanServer",
    "PoolSizing",
    "SecondConnectionError",
    "busy_timeout_s",
    "migrate",
    "sqlite_cache_kib",
]

log = logging.getLogger("cellplane.db")

_MIGRATIONS = Path(__file__).parent / "migrations"


def busy_timeout_s(environ: Mapping[str, str] = os.environ) -> float:
    """How long a SQLite write waits for another writer's lock before it gives up (the API then
    answers 503 with Retry-After): ``CELLPLANE_DB_BUSY_TIMEOUT_S``, default 30 s."""
    raw = environ.get("CELLPLANE_DB_BUSY_TIMEOUT_S", "").strip()
    try:
        value = float(raw) if raw else 30.0
    except ValueError:
        raise ValueError(
            f"CELLPLANE_DB_BUSY_TIMEOUT_S={raw!r} is not a number of seconds"
        ) from None
    if not 0 < value <= 3600:
        raise ValueError(f"CELLPLANE_DB_BUSY_TIMEOUT_S={raw!r} is not within (0, 3600] seconds")
    return value


#: Each pooled SQLite connection's page cache, KiB (SQLite's default is 2,000: with the pool's
#: 40 connections up to 80 MB, which filled as the database grew; issue 14's soak). The pages
#: are in the kernel's cache anyway: a miss is a read from memory.
SQLITE_CACHE_KIB = 512


def _env_int(environ: Mapping[str, str], name: str, default: int, what: str, minimum: int) -> int:
    raw = environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of {what}") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r} is below {minimum} {what}")
    return value


def sqlite_cache_kib(environ: Mapping[str, str] = os.environ) -> int:
    """``CELLPLANE_SQLITE_CACHE_KIB`` (default 512): each SQLite connection's page cache."""
    return _env_int(environ, "CELLPLANE_SQLITE_CACHE_KIB", SQLITE_CACHE_KIB, "KiB", 1)


#: Prepared statements each pooled SQLite connection keeps (the `sqlite3` module's default is
#: 128, ~7 KiB and up each: with 40 connections up to ~35 MB, which filled as the pool warmed up
#: under the soak; issue 14). A miss re-prepares the statement (tens of microseconds).
SQLITE_STATEMENTS = 32


def sqlite_statements(environ: Mapping[str, str] = os.environ) -> int:
    """``CELLPLANE_SQLITE_STATEMENTS`` (default 32): each SQLite connection's statement cache."""
    return _env_int(environ, "CELLPLANE_SQLITE_STATEMENTS", SQLITE_STATEMENTS, "statements", 0)


def _sqlite_pragmas(busy_ms: int, cache_kib: int = SQLITE_CACHE_KIB) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_ms:d}")
        cur.execute(f"PRAGMA cache_size=-{cache_kib:d}")  # negative: KiB, not pages
        cur.close()

    return on_connect


def _env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PoolSizing:
    """Threads and connections, sized together (see the module doc).

    Defaults: SQLite (connections are cheap file handles) 32 API threads + 8 background threads;
    PostgreSQL 24 + 6, i.e. 30 connections (the old pool's 10 + 20), well inside PostgreSQL's
    default ``max_connections`` of 100. Environment: ``CELLPLANE_API_THREADS``,
    ``CELLPLANE_BACKGROUND_THREADS``, ``CELLPLANE_DB_POOL_OVERFLOW`` (extra connections for
    threads outside both pools, e.g. the cluster executor's workers; default 8),
    ``CELLPLANE_DB_POOL_TIMEOUT_S`` (default 30).
    """

    api_threads: int
    background_threads: int
    overflow: int = 8
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.api_threads < 1 or self.background_threads < 1 or self.overflow < 0:
            raise ValueError("api_threads and background_threads must be >= 1, overflow >= 0")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    @property
    def pool_size(self) -> int:
        """Connections kept: one per API thread and one per background thread."""
        return self.api_threads + self.background_threads

    def apply_to_running_loop(self) -> None:
        """Bound the running event loop's thread pools to this sizing: anyio's default limiter
        (FastAPI's sync routes and dependencies, run_in_threadpool) to ``api_threads``, and the
        loop's default executor (asyncio.to_thread: the controller, the cluster executor) to
        ``background_threads``. Call from the app's lifespan, on the serving loop."""
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = self.api_threads
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(self.background_threads, thread_name_prefix="cp-background")
        )
        log.info(
            "threads: %d API, %d background; database pool %d + %d overflow",
            self.api_threads,
            self.background_threads,
            self.pool_size,
            self.overflow,
        )

    @classmethod
    def default(cls, url: str, environ: Mapping[str, str] | None = None) -> PoolSizing:
        env = os.environ if environ is None else environ
        sqlite = url.startswith("sqlite")

        def num(name: str, default: float) -> float:
            raw = env.get(name)
            try:
                return float(raw) if raw not in (None, "") else default
            except ValueError:
                raise ValueError(f"{name} must be a number, not {raw!r}") from None

        return cls(
            api_threads=int(num("CELLPLANE_API_THREADS", 32 if sqlite else 24)),
            background_threads=int(num("CELLPLANE_BACKGROUND_THREADS", 8 if sqlite else 6)),
            overflow=int(num("CELLPLANE_DB_POOL_OVERFLOW", 8)),
            timeout_s=num("CELLPLANE_DB_POOL_TIMEOUT_S", 30.0),
        )


class SecondConnectionError(RuntimeError):
    """A thread asked for a second database connection while it held one (strict mode)."""


class _OneConnectionPerThread:
    """Pool listeners counting the connections each thread holds; raise on a second one."""

    _KEY = "cellplane_thread"

    def __init__(self) -> None:
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    def checkout(self, _dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._held.get(me, 0) >= 1:
                raise SecondConnectionError(
                    f"thread {threading.current_thread().name!r} checked out a second database "
                    "connection while holding one: release the first session before opening "
                    "another (see cellplane.state.db)"
                )
            self._held[me] = self._held.get(me, 0) + 1
        record.info[self._KEY] = me

    def checkin(self, _dbapi_conn: Any, record: Any) -> None:
        owner = record.info.pop(self._KEY, None)
        if owner is None:
            return
        with self._lock:
            n = self._held.get(owner, 0) - 1
            if n > 0:
                self._held[owner] = n
            else:
                self._held.pop(owner, None)

    def held_by_current_thread(self) -> int:
        with self._lock:
            return self._held.get(threading.get_ident(), 0)


class Database:
    def __init__(
        self, url: str, *, sizing: PoolSizing | None = None, strict: bool | None = None
    ) -> None:
        self.url = url
        self.sizing = sizing or PoolSizing.default(url)
        kwargs: dict[str, Any] = {}
        memory = url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url
        busy = busy_timeout_s()
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {
                "check_same_thread": False,
                "timeout": busy,
                "cached_statements": sqlite_statements(),
            }
        else:
            kwargs["pool_pre_ping"] = True
        if not memory:  # an in-memory SQLite database keeps SQLAlchemy's single-connection pool
            kwargs["pool_size"] = self.sizing.pool_size
            kwargs["max_overflow"] = self.sizing.overflow
            kwargs["pool_timeout"] = self.sizing.timeout_s
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(
                self.engine, "connect", _sqlite_pragmas(int(busy * 1000), sqlite_cache_kib())
            )
        self.strict = _env_flag(os.environ.get("CELLPLANE_DB_STRICT")) if strict is None else strict
        self._guard: _OneConnectionPerThread | None = None
        if self.strict:
            self._guard = _OneConnectionPerThread()
            event.listen(self.engine, "checkout", self._guard.checkout)
            event.listen(self.engine, "checkin", self._guard.checkin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time. Its busy handler makes the others sleep and poll
        # (1, 2, 5 ... 100 ms), so under load the lock sat free while every waiter slept and a
        # writer could lose every race for seconds (bench/scale.py: write transactions of a
        # server with many hosts queued ~90% of the time). The writers of this process queue
        # on a lock of their own instead, handed over as soon as it is released; SQLite's lock
        # and busy timeout still order them with other processes (a backup, a migration).
        self._busy_s = busy
        self._writer = threading.Lock() if self.is_sqlite and not memory else None
        self._writer_owner = threading.local()

    def connections_held(self) -> int:
        """Connections the current thread holds (strict mode only; 0 otherwise)."""
        return self._guard.held_by_current_thread() if self._guard else 0

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back otherwise.

        In a leader's controllers (`cellplane.state.leadership.fenced`) the commit is fenced:
        it re-reads the leadership epoch first and raises FencedOut when another replica took
        over."""
        with self._writing():
            s = self._sessions()
            try:
                if self.is_sqlite:
                    # Take the write lock up front: SQLite cannot upgrade a read lock under
                    # contention without failing, and every change here reads before it writes.
                    s.connection().exec_driver_sql("BEGIN IMMEDIATE")
                fenced = current_fence() is not None  # a leader's controller (state.leadership)
                if fenced:
                    begin_fenced(s.connection())
                yield s
                if fenced:
                    s.flush()
                    check_fence(s.connection())
                s.commit()
            except BaseException:
                s.rollback()
                raise
            finally:
                s.close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """This process's turn to write (SQLite; nothing to wait for on PostgreSQL). A thread
        that already writes (a nested session, which SQLite would refuse after its busy
        timeout anyway) is not made to wait for itself."""
        lock = self._writer
        if lock is None or getattr(self._writer_owner, "held", False):
            yield
            return
        if not lock.acquire(timeout=self._busy_s):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            )
        self._writer_owner.held = True
        try:
            yield
        finally:
            self._writer_owner.held = False
            lock.release()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """`session` on a Core connection, without the ORM's unit of work: for hot paths that
        write a few rows with Core statements (the token endpoint's audit row). Same write lock
        up front on SQLite, same commit or rollback. Session events do not see these writes."""
        with self._writing(), self.engine.connect() as conn:
            try:
                if self.is_sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                begin_fenced(conn)
                yield conn
                check_fence(conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    @contextmanager
    def reader(self, *, snapshot: bool = True) -> Iterator[Session]:
        """A session that only reads; rolled back at the end.

        Every statement sees the state the first one saw: a deferred transaction on SQLite (WAL
        keeps its snapshot and writers go on), REPEATABLE READ on PostgreSQL. An answer built
        from several queries agrees with itself: an agent's assignments (its cells and the
        volumes they mount), a cluster's view (its state and its task's; read apart, a commit
        between the two showed a COMPLETED task on a PROVISIONING cluster).

        ``snapshot=False`` reads each statement at what was committed when it ran (SQLite: the
        driver opens no transaction for a SELECT; PostgreSQL: READ COMMITTED)."""
        s = self._sessions()
        try:
            if snapshot and self.is_sqlite:
                conn = s.connection()
                raw = conn.connection.dbapi_connection
                # Not inside a transaction this thread already holds (an in-memory database
                # shares one connection): that one's view is already consistent.
                if raw is not None and not raw.in_transaction:
                    conn.exec_driver_sql("BEGIN")
            elif snapshot:
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield s
        finally:
            s.rollback()
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


class DatabaseNewerThanServer(RuntimeError):
    """The database was migrated by a newer release: this server does not know its revision.

    Nothing was changed. Run the release that made it (or a newer one); a downgrade is not
    supported (restore the backup taken before the upgrade instead)."""

    #: The exit code of `cellplane server` / `python -m cellplane.daemon server` for this case.
    EXIT_CODE = 3

    def __init__(self, found: str, head: str) -> None:
        self.found = found
        self.head = head
        super().__init__(
            f"the database is at schema revision {found!r}, which this Cellplane release does "
            f"not know (its newest is {head!r}): it was upgraded by a newer release. Nothing was "
            "changed. Run that release or a newer one, or restore the backup taken before the "
            "upgrade; a downgrade is not supported"
        )


def migrate(url: str, key_dir: Path | None = None) -> None:
    """Bring the schema to the newest revision (idempotent).

    ``key_dir`` is the server's data directory, where the key that seals stored secrets lives
    (`cellplane.sealing`; migration 0016 seals the rows written before it). Raises
    DatabaseNewerThanServer, before touching anything, when the database is at a revision this
    release does not know."""
    # Imported here: the long-running server migrates in a child process and never loads Alembic.
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if key_dir is not None:
        cfg.attributes["secrets_key_dir"] = str(key_dir)
    script = ScriptDirectory.from_config(cfg)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    known = {rev.revision for rev in script.walk_revisions()}
    for rev in current:
        if rev not in known:
            raise DatabaseNewerThanServer(rev, str(script.get_current_head()))
    command.upgrade(cfg, "head")
