"""What every service call carries: who is asking, and the handles of the running server.

`Principal` is the seam the identity service plugs into: routes declare a permission, the auth
dependency turns a bearer token into a Principal, services scope every query by its tenant.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cellplane.state.db import Database

__all__ = ["ROLE_PERMISSIONS", "Notifier", "Principal", "Services"]

# Which permissions each role grants. Routes declare one permission each.
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "system-admin": frozenset({"*"}),
    "tenant-admin": frozenset(
        {
            "cells:read",
            "cells:write",
            "volumes:read",
            "volumes:write",
            "projects:read",
            "projects:write",
            "images:read",
            "flavors:read",
            "tasks:read",
            "hosts:read",
        }
    ),
    "project-member": frozenset(
        {
            "cells:read",
            "cells:write",
            "volumes:read",
            "volumes:write",
            "projects:read",
            "images:read",
            "flavors:read",
            "tasks:read",
        }
    ),
    "project-viewer": frozenset(
        {"cells:read", "volumes:read", "projects:read", "images:read", "flavors:read", "tasks:read"}
    ),
    "agent": frozenset({"agent"}),
}


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    tenant: str
    roles: tuple[str, ...]
    kind: str = "user"  # user | service | agent

    def can(self, permission: str) -> bool:
        for role in self.roles:
            grants = ROLE_PERMISSIONS.get(role, frozenset())
            if "*" in grants and permission != "agent":
                return True
            if permission in grants:
                return True
        return False

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.subject}"


class Notifier:
    """Wakes asyncio waiters (long polls, SSE, the controller) from any thread.

    Topics are strings such as `host:<id>`, `task:<id>`, `controller`. Each topic has a version
    counter; a waiter passes the version it saw and returns as soon as it moves.
    """

    def __init__(self) -> None:
        self._versions: dict[str, int] = defaultdict(int)
        self._events: dict[str, list[asyncio.Event]] = defaultdict(list)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def version(self, topic: str) -> int:
        return self._versions[topic]

    def publish(self, *topics: str) -> None:
        with self._lock:
            for t in topics:
                self._versions[t] += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake(topics)
        else:
            loop.call_soon_threadsafe(self._wake, topics)

    def _wake(self, topics: tuple[str, ...]) -> None:
        for t in topics:
            for ev in self._events.pop(t, []):
                ev.set()

    async def wait(self, topic: str, seen: int, timeout: float) -> int:
        if self._versions[topic] != seen:
            return self._versions[topic]
        ev = asyncio.Event()
        self._events[topic].append(ev)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            waiters = self._events.get(topic)
            if waiters and ev in waiters:
                waiters.remove(ev)
        return self._versions[topic]


@dataclass
class Services:
    """Handles shared by routes, services and controllers of one server process."""

    db: Database
    data_dir: Path
    notifier: Notifier = field(default_factory=Notifier)
    heartbeat_suspect_s: float = 15.0
    heartbeat_down_s: float = 60.0

    @property
    def images_dir(self) -> Path:
        d = self.data_dir / "images"
        d.mkdir(parents=True, exist_ok=True)
        return d
