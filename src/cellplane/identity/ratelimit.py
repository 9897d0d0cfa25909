"""Token buckets per key, for the identity endpoints and the LDAP settings check."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets per key, bounded in number (least recently used keys are forgotten)."""

    def __init__(self, rate_per_s: float, burst: float, max_keys: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: Hashable, now: float) -> float | None:
        """None if a request is allowed now, else the seconds until one will be."""
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            wait: float | None = None
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return wait

    def refund(self, key: Hashable) -> None:
        """Give back one request taken for ``key`` (e.g. a login that turned out good)."""
        with self._lock:
            found = self._buckets.get(key)
            if found is not None:
                self._buckets[key] = (min(self.burst, found[0] + 1.0), found[1])
