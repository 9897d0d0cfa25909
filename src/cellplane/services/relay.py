"""Wake-ups between server replicas: the notifier's topics over PostgreSQL LISTEN/NOTIFY.

Each replica wakes its own waiters (agents' long polls, SSE streams, the controllers) with its
in-process `Notifier`. With several replicas on one PostgreSQL, the leader places a cell on a host
whose agent long-polls another replica, and a cell created on one replica must wake the leader's
controllers: so every topic a replica publishes is also sent, batched by a sender thread, as
``NOTIFY cellplane`` (JSON: the replica's name and its topics), and a listener thread of every
replica publishes the others' topics locally. Both threads use connections of their own (not the
pool's) and reconnect after a loss; a topic lost meanwhile costs a waiter its timeout, never
correctness (every waiter re-reads the database when it wakes). SQLite (one server): no relay.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from typing import Any

import structlog
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from cellplane.services.context import Services

__all__ = ["CHANNEL", "Relay"]

log = structlog.get_logger("cellplane.relay")

CHANNEL = "cellplane"
#: NOTIFY payloads must stay under 8000 bytes: topics are sent in chunks below this.
_MAX_PAYLOAD = 7000


def chunks(origin: str, topics: list[str]) -> list[str]:
    """The payloads for ``topics`` (each topic once), every one under the NOTIFY size limit."""
    out: list[str] = []
    batch: list[str] = []
    size = 0
    for topic in dict.fromkeys(topics):
        if batch and size + len(topic) + 4 > _MAX_PAYLOAD:
            out.append(json.dumps({"from": origin, "topics": batch}))
            batch, size = [], 0
        batch.append(topic)
        size += len(topic) + 4
    if batch:
        out.append(json.dumps({"from": origin, "topics": batch}))
    return out


class Relay:
    """Started by the server entry on PostgreSQL (`start`), stopped at exit (`stop`)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.origin = svc.replica
        self._engine = create_engine(svc.db.url, poolclass=NullPool)
        self._out: queue.Queue[tuple[str, ...] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.svc.notifier.relay = self._out.put
        for target, name in ((self._send, "cp-relay-send"), (self._listen, "cp-relay-listen")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.svc.notifier.relay = None
        self._stop.set()
        self._out.put(None)
        for t in self._threads:
            t.join(5)
        self._engine.dispose()

    def _raw(self) -> Any:
        raw = self._engine.raw_connection()
        conn: Any = raw.driver_connection
        conn.autocommit = True
        return raw, conn

    def _send(self) -> None:
        raw = conn = None
        while not self._stop.is_set():
            first = self._out.get()
            if first is None:
                break
            topics = list(first)
            with contextlib.suppress(queue.Empty):
                while len(topics) < 5000:
                    more = self._out.get_nowait()
                    if more is None:
                        self._stop.set()
                        break
                    topics.extend(more)
            try:
                if conn is None:
                    raw, conn = self._raw()
                for payload in chunks(self.origin, topics):
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            except Exception as exc:
                log.warning("relay: sending failed", error=str(exc)[:200])
                with contextlib.suppress(Exception):
                    if raw is not None:
                        raw.invalidate()
                raw = conn = None
        with contextlib.suppress(Exception):
            if raw is not None:
                raw.close()

    def _listen(self) -> None:
        while not self._stop.is_set():
            raw = None
            try:
                raw, conn = self._raw()
                conn.execute(f"LISTEN {CHANNEL}")
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=1.0):
                        self._deliver(note.payload)
            except Exception as exc:
                log.warning("relay: listening failed", error=str(exc)[:200])
                self._stop.wait(1.0)
            finally:
                with contextlib.suppress(Exception):
                    if raw is not None:
                        raw.close()

    def _deliver(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data.get("from") == self.origin:
                return
            topics = [t for t in data.get("topics", []) if isinstance(t, str)]
        except (ValueError, AttributeError):
            return
        if topics:
            self.svc.notifier.publish_local(*topics)
