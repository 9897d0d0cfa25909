"""The portal's server-side sessions: the browser holds only a random id (an HttpOnly cookie).

A session starts before sign-in (it carries the pending authorization request: `state`, the
PKCE verifier, the nonce) and gets a new id once the user is signed in, so an id seen before
sign-in is worth nothing after it. It holds the tokens the issuer gave the portal and the CSRF
token every form carries.

Sessions are rows of the server's database (`services.portal_sessions`: keyed by a hash of the
id, the secrets sealed with the server's secrets key), so a server restart keeps everyone
signed in and every replica of the server knows every session. `get` reads the row each time
(another replica may have refreshed the tokens) and writes `last_seen` at most every
`touch_s`; a change to a session is written with `save`. Expired rows go in a bounded sweep
when sessions are made (`sweep_s` apart), and past `max_sessions` the least recently used ones
not signed in go first.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cellplane.services.portal_sessions import PortalSessions, SessionRow, id_hash

__all__ = ["PendingLogin", "PortalSession", "SessionStore"]


@dataclass
class PendingLogin:
    """An authorization request on its way through the issuer's login page."""

    tenant: str
    state: str
    verifier: str
    nonce: str
    next_path: str


@dataclass
class PortalSession:
    id: str
    csrf: str
    created: float
    last_seen: float
    pending: PendingLogin | None = None
    tenant: str = ""
    user: str = ""
    access_token: str = ""
    refresh_token: str = ""
    id_token: str = ""
    expires_at: float = 0.0
    project: str = ""

    @property
    def signed_in(self) -> bool:
        return bool(self.access_token)

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, str(presented))


_SECRET_FIELDS = ("csrf", "access_token", "refresh_token", "id_token", "project")


def _row(s: PortalSession) -> SessionRow:
    kept: dict[str, Any] = {k: getattr(s, k) for k in _SECRET_FIELDS}
    if s.pending is not None:
        kept["pending"] = vars(s.pending)
    return SessionRow(
        id_hash=id_hash(s.id),
        signed_in=s.signed_in,
        tenant=s.tenant,
        user=s.user,
        created_at=s.created,
        last_seen=s.last_seen,
        expires_at=s.expires_at,
        secrets=kept,
    )


def _session(session_id: str, row: SessionRow) -> PortalSession | None:
    kept = row.secrets
    try:
        pending = PendingLogin(**kept["pending"]) if kept.get("pending") else None
        s = PortalSession(
            id=session_id,
            created=row.created_at,
            last_seen=row.last_seen,
            pending=pending,
            tenant=row.tenant,
            user=row.user,
            expires_at=row.expires_at,
            **{k: str(kept.get(k, "")) for k in _SECRET_FIELDS},
        )
    except (TypeError, KeyError):
        return None  # not what this release writes
    return s if s.csrf else None


class SessionStore:
    """Sessions by id, dropped after `idle_s` without a request or `max_age_s` in all (a pending
    sign-in after `pending_s`); at most `max_sessions` (the least recently used go first, those
    not signed in before any signed-in one)."""

    def __init__(
        self,
        rows: PortalSessions,
        *,
        idle_s: float = 8 * 3600.0,
        max_age_s: float = 24 * 3600.0,
        pending_s: float = 900.0,
        max_sessions: int = 10_000,
        sweep_s: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.rows = rows
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.pending_s = pending_s
        self.max_sessions = max_sessions
        self.sweep_s = sweep_s
        #: `last_seen` is written when it is older than this (not on every request).
        self.touch_s = min(60.0, idle_s / 10)
        self._clock: Callable[[], float] = clock or time.time
        self._swept = float("-inf")
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def now(self) -> float:
        return self._clock()

    def _alive(self, s: PortalSession, now: float) -> bool:
        if not s.signed_in:
            return now - s.created <= self.pending_s
        return now - s.last_seen <= self.idle_s and now - s.created <= self.max_age_s

    def _sweep(self, now: float, *, adding: int) -> None:
        """The bounded cleanup: every `sweep_s`, and whenever the bound may be passed."""
        if now - self._swept < self.sweep_s and self.rows.count() + adding <= self.max_sessions:
            return
        self._swept = now
        self.rows.sweep(
            now,
            pending_s=self.pending_s,
            idle_s=self.idle_s,
            max_age_s=self.max_age_s,
            max_sessions=self.max_sessions - adding,
        )

    def new(self) -> PortalSession:
        now = self.now()
        s = PortalSession(
            id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, last_seen=now
        )
        self._sweep(now, adding=1)
        self.rows.insert(_row(s))
        return s

    def get(self, session_id: str | None) -> PortalSession | None:
        if not session_id or len(session_id) > 100:
            return None
        now = self.now()
        key = id_hash(session_id)
        row = self.rows.load(key)
        s = _session(session_id, row) if row is not None else None
        if s is None:
            return None
        if not self._alive(s, now):
            self.rows.delete(key)
            return None
        if now - s.last_seen >= self.touch_s:
            s.last_seen = now
            self.rows.touch(key, now)
        return s

    def save(self, s: PortalSession) -> None:
        """Write a change to the session (its tokens, its pending sign-in)."""
        self.rows.save(_row(s))

    def rotate(self, s: PortalSession) -> PortalSession:
        """The same session under a fresh id and CSRF token (after sign-in), written at once."""
        old = id_hash(s.id)
        s.id = secrets.token_urlsafe(32)
        s.csrf = secrets.token_urlsafe(32)
        s.created = s.last_seen = self.now()
        self.rows.replace(old, _row(s))
        return s

    def drop(self, session_id: str) -> bool:
        return self.rows.delete(id_hash(session_id))

    def claim_refresh(self, s: PortalSession, hold_s: float = 30.0) -> bool:
        """Whether this process may spend the session's refresh token now (no other replica
        is refreshing it); `save` ends the claim."""
        return self.rows.claim_refresh(id_hash(s.id), self.now(), hold_s)

    def refresh_lock(self, session_id: str) -> asyncio.Lock:
        """Held while this process refreshes the session's tokens (concurrent requests of one
        session: the page, its event streams)."""
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    def __len__(self) -> int:
        return self.rows.count()
