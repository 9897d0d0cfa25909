"""Admissions kept for a few seconds: a client certificate admitted to a permission in the
endpoint's project is not checked again for `TTL_S` seconds.

The docker CLI opens a TLS connection for each request it cannot send on an idle one (`docker
run -d` makes three: `create`, the `wait` it holds open, `start`), and each admission read the
certificate's record (revocation), its user, their roles and the project: ~4-5 ms of the
server's time on the path of every request. What a kept admission can miss is a change within
`TTL_S`: a certificate revoked, a role taken away, a user deleted take effect that much later
(Kubernetes keeps a webhook's token reviews for 2 minutes and its allowed decisions for 5).
Refusals are never kept, a certificate's admission never outlives the certificate, and bearer
tokens are not kept here (they have their own cache in `identity.authn`).

Pure: the caller passes the time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from cellplane.services.context import Principal

__all__ = ["TTL_S", "Admissions"]

#: How long an admission is kept.
TTL_S = 5.0
_SIZE = 1024


class Admissions:
    """(certificate digest, permission) -> the admitted principal, until it expires."""

    def __init__(self, ttl: float = TTL_S, size: int = _SIZE) -> None:
        self._ttl = ttl
        self._size = size
        self._kept: OrderedDict[tuple[bytes, str], tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, str], now: float) -> Principal | None:
        """The principal admitted under `key`, if that was less than the TTL ago."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            until, principal = kept
            if now >= until:
                del self._kept[key]
                return None
            self._kept.move_to_end(key)
            return principal

    def put(self, key: tuple[bytes, str], principal: Principal, now: float, ends: float) -> None:
        """Keep an admission made at `now` of a credential valid until `ends`."""
        until = min(now + self._ttl, ends)
        if until <= now:
            return
        with self._lock:
            self._kept[key] = (until, principal)
            self._kept.move_to_end(key)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
