"""The portal's server-side sessions: the browser holds only a random id (an HttpOnly cookie).

A session starts before sign-in (it carries the pending authorization request: `state`, the
PKCE verifier, the nonce) and gets a new id once the user is signed in, so an id seen before
sign-in is worth nothing after it. It holds the tokens the issuer gave the portal and the CSRF
token every form carries. Sessions live in this process's memory: a server restart signs
everyone out of the portal (the issuer's refresh tokens then expire unused).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

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
    #: Held while the tokens are refreshed: a refresh token is spent on use, and the issuer
    #: revokes the whole family when one is presented twice (concurrent page, event streams).
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def signed_in(self) -> bool:
        return bool(self.access_token)

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf, str(presented))


class SessionStore:
    """Sessions by id, dropped after `idle_s` without a request or `max_age_s` in all; at most
    `max_sessions` (the least recently used goes first)."""

    def __init__(
        self,
        *,
        idle_s: float = 8 * 3600.0,
        max_age_s: float = 24 * 3600.0,
        pending_s: float = 900.0,
        max_sessions: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.pending_s = pending_s
        self.max_sessions = max_sessions
        self._clock: Callable[[], float] = clock or time.time
        self._items: OrderedDict[str, PortalSession] = OrderedDict()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    def _alive(self, s: PortalSession, now: float) -> bool:
        if not s.signed_in:
            return now - s.created <= self.pending_s
        return now - s.last_seen <= self.idle_s and now - s.created <= self.max_age_s

    def new(self) -> PortalSession:
        now = self.now()
        s = PortalSession(
            id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, last_seen=now
        )
        with self._lock:
            self._items[s.id] = s
            while len(self._items) > self.max_sessions:
                self._evict()
        return s

    def _evict(self) -> None:
        """Drop the least recently used session that is not signed in (anyone can make those
        by loading the login page, so they must not push signed-in users out), else the least
        recently used of all."""
        for key, candidate in self._items.items():
            if not candidate.signed_in:
                del self._items[key]
                return
        self._items.popitem(last=False)

    def get(self, session_id: str | None) -> PortalSession | None:
        if not session_id or len(session_id) > 100:
            return None
        now = self.now()
        with self._lock:
            s = self._items.get(session_id)
            if s is None:
                return None
            if not self._alive(s, now):
                del self._items[session_id]
                return None
            s.last_seen = now
            self._items.move_to_end(session_id)
            return s

    def rotate(self, s: PortalSession) -> PortalSession:
        """The same session under a fresh id and CSRF token (after sign-in)."""
        with self._lock:
            self._items.pop(s.id, None)
            s.id = secrets.token_urlsafe(32)
            s.csrf = secrets.token_urlsafe(32)
            s.created = s.last_seen = self.now()
            self._items[s.id] = s
        return s

    def drop(self, session_id: str) -> PortalSession | None:
        with self._lock:
            return self._items.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._items)
