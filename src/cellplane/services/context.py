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
from typing import TYPE_CHECKING

from cellplane.services.signing import TokenService
from cellplane.state.db import Database

if TYPE_CHECKING:
    from cellplane.services.oidc import OidcSettings

__all__ = ["ASSIGNABLE_ROLES", "ROLE_PERMISSIONS", "Notifier", "Principal", "Services"]

# Which permissions each role grants. Routes declare one permission each (see api/deps.py):
# system scope (the operator's infrastructure and tenants), tenant scope (a tenant's directory,
# projects, quotas, audit) and project scope (cells, volumes, clusters, tasks). `self` is what any
# signed-in caller may do about themselves (whoami, their own client certificate).
_PROJECT_READ = frozenset(
    {"cells:read", "volumes:read", "projects:read", "tasks:read", "quotas:read"}
)
_PROJECT_WRITE = frozenset({"cells:write", "volumes:write"})
_CATALOG = frozenset({"images:read", "flavors:read", "self"})
_TENANT_ADMIN = frozenset(
    {
        "projects:write",
        "users:read",
        "users:write",
        "groups:read",
        "groups:write",
        "clients:read",
        "clients:write",
        "roles:read",
        "roles:write",
        "quotas:write",
        "audit:read",
        "identity:write",
    }
)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "system-admin": frozenset({"*"}),
    "tenant-admin": _PROJECT_READ | _PROJECT_WRITE | _CATALOG | _TENANT_ADMIN,
    "project-member": _PROJECT_READ | _PROJECT_WRITE | _CATALOG,
    "project-viewer": _PROJECT_READ | _CATALOG,
    "agent": frozenset({"agent"}),
}
#: Roles that may be assigned, by scope.
ASSIGNABLE_ROLES: dict[str, frozenset[str]] = {
    "system": frozenset({"system-admin"}),
    "tenant": frozenset({"tenant-admin", "project-member", "project-viewer"}),
    "project": frozenset({"project-member", "project-viewer"}),
}


def _grants(roles: tuple[str, ...], permission: str) -> bool:
    for role in roles:
        granted = ROLE_PERMISSIONS.get(role, frozenset())
        if permission in granted or ("*" in granted and permission != "agent"):
            return True
    return False


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, a service account (OAuth client) or an agent, of one tenant.

    `roles` hold over the whole tenant (and `system-admin` over the system); `project_roles`
    are (project id, roles) pairs that hold in that project only.
    """

    subject: str
    tenant_id: str
    tenant: str
    roles: tuple[str, ...]
    kind: str = "user"  # user | service | agent
    project_roles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    name: str = ""

    def can(self, permission: str) -> bool:
        """Whether some role of the caller, anywhere, grants `permission` (the route check)."""
        if _grants(self.roles, permission):
            return True
        return any(_grants(roles, permission) for _, roles in self.project_roles)

    def can_in(self, project_id: str, permission: str) -> bool:
        """Whether the caller holds `permission` in the project (of their own tenant)."""
        if _grants(self.roles, permission):
            return True
        return any(pid == project_id and _grants(r, permission) for pid, r in self.project_roles)

    def sees_project(self, project_id: str) -> bool:
        """Whether the project exists for the caller at all (else it answers 404)."""
        if any(r in ROLE_PERMISSIONS and r != "agent" for r in self.roles):
            return True
        return any(pid == project_id for pid, _ in self.project_roles)

    @property
    def is_system_admin(self) -> bool:
        return "system-admin" in self.roles

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
    # The URL clients reach the API at; issuers are `{public_url}/identity/{tenant}`. None: taken
    # from each request (in-process tests).
    public_url: str | None = None
    access_ttl_s: float = 300.0
    # The OIDC provider's tunables (lockout, rate limit, lifetimes); None: its defaults.
    oidc: OidcSettings | None = None
    # Largest request body (413 above it, before it is parsed); image uploads have their own.
    max_body_bytes: int = 1024 * 1024
    max_image_bytes: int = 64 * 1024**3
    _tokens: TokenService | None = field(default=None, repr=False)

    @property
    def tokens(self) -> TokenService:
        if self._tokens is None:
            self._tokens = TokenService(
                self.data_dir / "identity" / "keys", access_ttl_s=self.access_ttl_s
            )
        return self._tokens

    @property
    def images_dir(self) -> Path:
        d = self.data_dir / "images"
        d.mkdir(parents=True, exist_ok=True)
        return d
