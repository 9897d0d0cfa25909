"""Short-lived answers of the directory for the token endpoint: a tenant by name, a client by id,
a subject's role assignments.

Each of these is a database round trip through SQLAlchemy (about 0.1 ms each on SQLite, the
roles query twice that), and a client_credentials grant needs all three for every token, while
the answers change only when an administrator changes the directory. So `OidcProvider` asks
`Lookups.get`, which keeps a found answer for `OidcSettings.lookup_cache_s` (5 s by default, the
authenticator's ``status_cache_s``; 0 turns the cache off).

Freshness: any commit in this process, by any SQLAlchemy `Session`, that inserts, updates or
deletes a tenant, client, user, group, group membership or role assignment (as ORM objects, or
as a bulk UPDATE/DELETE/INSERT run through the session) drops every entry of every `Lookups` of
the process at once (`_changed_by`). In a single server process, which is how Cellplane runs, a
change therefore applies to the very next request: a deleted client or an old secret after a
rotation is refused, a removed role is absent from the next token. Another process writing the
same database is seen within ``lookup_cache_s``. Nothing is cached for an unknown tenant or
client (so made-up ids cannot fill the cache), and a lookup that ran while a change committed is
not stored. What access tokens may do is still decided on every request by the authenticator
(`identity/authn.py`): revocation, disabled or deleted subjects.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Final, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from cellplane.state.identity_models import Group, GroupMember, OAuthClient, RoleAssignment, User
from cellplane.state.models import Tenant

__all__ = ["Lookups"]

T = TypeVar("T")

#: The models whose rows the cached answers are made of.
WATCHED: Final = (Tenant, OAuthClient, User, Group, GroupMember, RoleAssignment)
_WATCHED_TABLES: Final = frozenset(m.__table__ for m in WATCHED)
#: Entries per `Lookups` before it starts over (tenants + clients + subjects in use).
MAX_ENTRIES: Final = 10_000
_FLAG: Final = "cellplane.identity_changed"

#: Every live `Lookups` of the process; told after a commit that changed a watched row.
_LIVE: weakref.WeakSet[Lookups] = weakref.WeakSet()
_installed = False
_install_lock = threading.Lock()


class Lookups:
    """A time-bounded memo of directory lookups, dropped whenever the directory changes."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0:
            raise ValueError("lookup_cache_s must be >= 0")
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        if ttl_s > 0:
            _install()
            _LIVE.add(self)

    def get(self, key: Hashable, load: Callable[[], T | None]) -> T | None:
        """The remembered answer for `key`, or `load()` (remembered unless it is None or the
        directory changed while it ran)."""
        if self.ttl_s <= 0:
            return load()
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        generation = self._generation
        loaded = load()
        if loaded is not None:
            with self._lock:
                if generation == self._generation:
                    if len(self._entries) >= MAX_ENTRIES:
                        self._entries.clear()
                    self._entries[key] = (now + self.ttl_s, loaded)
        return loaded

    def changed(self) -> None:
        """Forget everything (the directory changed)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()


def _install() -> None:
    """Listen, once per process, to every Session's flushes, bulk statements and commits."""
    global _installed
    with _install_lock:
        if _installed:
            return
        event.listen(Session, "after_flush", _flushed)
        event.listen(Session, "do_orm_execute", _executed)
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_rollback", _rolled_back)
        _installed = True


def _flushed(session: Session, _flush: UOWTransaction) -> None:
    # In after_flush, new/dirty/deleted still list what this flush wrote.
    for obj in itertools.chain(session.new, session.dirty, session.deleted):
        if isinstance(obj, WATCHED):
            session.info[_FLAG] = True
            return


def _executed(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete or state.is_insert:
        table = getattr(state.statement, "table", None)
        if table in _WATCHED_TABLES:
            state.session.info[_FLAG] = True


def _committed(session: Session) -> None:
    if session.info.pop(_FLAG, False):
        _changed_by()


def _rolled_back(session: Session) -> None:
    session.info.pop(_FLAG, None)


def _changed_by() -> None:
    for lookups in list(_LIVE):
        lookups.changed()
