"""Which server replica runs the controllers: a PostgreSQL advisory lock, and an epoch to fence.

Every replica serves the API; the controllers (placement with failover and drains, the volume
mover, the cluster executor) run in exactly one, the leader. A replica leads while it holds a
transaction-level advisory lock (``pg_try_advisory_xact_lock``) in a transaction kept open on a
connection of its own, renewed (one ``SELECT 1``) every tick:

* a leader killed (kill -9, a crash, a lost network) drops its connection, and with it the lock:
  the next replica to try takes it within a tick;
* a leader paused (SIGSTOP, a stalled VM) sends nothing: PostgreSQL ends its session after
  ``idle_in_transaction_session_timeout`` (``LOCK_IDLE_S``) and the lock is free again.

A replica that gets the lock bumps the epoch of the ``leadership`` row and runs the controllers
under it (`cellplane.state.leadership.fenced`): every controller transaction re-checks the
epoch before it commits, so an old leader that resumes after a takeover cannot commit anything.
It then notices the lost lock (or the moved epoch) on its next tick and stops its controllers.

With SQLite there is one server: it leads, always, without a lock (`controller.runtime`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from cellplane.controller.election import Action, Election, Observation
from cellplane.ids import utcnow
from cellplane.metrics import LEADER, LEADER_EPOCH
from cellplane.services.context import Services
from cellplane.state.leadership import bump_epoch, fenced, read_leader

__all__ = ["LOCK_IDLE_S", "LOCK_KEY", "LeaderLock", "lead"]

log = structlog.get_logger("cellplane.leader")

T = TypeVar("T")

#: The advisory lock's key: "cellplane" in ASCII, as a bigint.
LOCK_KEY = 0x63656C6C706C616E
#: A paused leader's lock is released by PostgreSQL after this many seconds of silence.
LOCK_IDLE_S = 5


class LeaderLock:
    """The advisory lock, held in an open transaction on a dedicated connection (not the pool's:
    its own engine without a pool, so that it never competes with the API for connections)."""

    def __init__(self, url: str, *, key: int = LOCK_KEY, idle_s: int = LOCK_IDLE_S) -> None:
        self._engine = create_engine(url, poolclass=NullPool)
        self._key = key
        self._idle_s = idle_s
        self._conn: Connection | None = None
        self._held = False

    def hold(self) -> bool:
        """Try to get the lock, or renew it when held; whether this replica holds it now."""
        try:
            if self._held and self._conn is not None:
                self._conn.exec_driver_sql("SELECT 1")  # keeps the transaction from idling out
                return True
            if self._conn is None:
                self._conn = self._engine.connect()
                self._conn.exec_driver_sql(
                    f"SET idle_in_transaction_session_timeout = '{int(self._idle_s)}s'"
                )
                self._conn.commit()
            got = self._conn.exec_driver_sql(
                f"SELECT pg_try_advisory_xact_lock({int(self._key)})"
            ).scalar()
            if got:
                self._held = True
                return True
            self._conn.rollback()
            return False
        except Exception as exc:  # the connection is gone (killed, timed out): start afresh
            log.warning("leader lock connection lost", error=str(exc)[:200])
            self._drop()
            return False

    def release(self) -> None:
        """Give the lock up (end its transaction); the connection is kept for the next try."""
        if self._conn is not None and self._held:
            try:
                self._conn.rollback()
            except Exception:
                self._drop()
        self._held = False

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self.release()
        self._drop()
        self._engine.dispose()


def _take_over(svc: Services, me: str) -> int:
    with svc.db.connection() as conn:
        return bump_epoch(conn, me, utcnow())


def _epoch(svc: Services) -> int | None:
    try:
        with svc.db.engine.connect() as conn:
            return read_leader(conn)[0]
    except Exception:
        return None


async def lead(
    svc: Services,
    controllers: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    *,
    me: str,
    tick: float = 1.0,
    lock: LeaderLock | None = None,
) -> None:
    """Take part in the election until cancelled; run ``controllers`` while this replica leads."""
    lock = lock or LeaderLock(svc.db.url)
    election = Election()
    running: contextlib.AsyncExitStack | None = None
    # A thread of its own: a renewal never waits behind busy controller passes in the shared
    # background pool (a renewal later than LOCK_IDLE_S would lose the lock).
    pool = ThreadPoolExecutor(1, thread_name_prefix="cp-leader")
    loop = asyncio.get_running_loop()

    async def call(fn: Callable[..., T], *args: Any) -> T:
        return await loop.run_in_executor(pool, fn, *args)

    async def stop() -> None:
        nonlocal running
        stack, running = running, None
        LEADER.set(0)
        svc.leading = False
        if stack is not None:
            await stack.aclose()

    try:
        while True:
            holds = await call(lock.hold)
            db_epoch = await call(_epoch, svc) if election.leading and holds else None
            action = election.observe(Observation(holds, db_epoch))
            if action is Action.TAKE_OVER:
                try:
                    epoch = await call(_take_over, svc, me)
                except Exception as exc:
                    log.warning("takeover failed", error=str(exc)[:200])
                    election.failed()
                    await call(lock.release)
                else:
                    election.took(epoch)
                    log.info("leading the controllers", replica=me, epoch=epoch)
                    stack = contextlib.AsyncExitStack()
                    with fenced(epoch):  # the loops' tasks copy this context when created
                        await stack.enter_async_context(controllers())
                    running = stack
                    LEADER.set(1)
                    LEADER_EPOCH.set(epoch)
                    svc.leading = True
                    svc.notifier.publish("controller")
            elif action is Action.STEP_DOWN:
                log.warning("no longer leading: controllers stopped", replica=me)
                await stop()
                await call(lock.release)
            await asyncio.sleep(tick)
    finally:
        await stop()
        await call(lock.close)
        pool.shutdown(wait=False)
