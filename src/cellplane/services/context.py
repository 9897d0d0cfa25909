"""What every service call carries: who is asking, and the handles of the running server.

`Principal` (who is asking) lives in `cellplane.identity.rbac` with the role table; it is
re-imported here because nearly every service module takes `(svc: Services, principal:
Principal)` and imports both from this one place.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cellplane.identity.rbac import Principal
from cellplane.registries import Registry
from cellplane.sealing import Sealer
from cellplane.services.admission import AdmissionCache
from cellplane.services.heartbeats import HeartbeatBuffer, VerifiedTokens
from cellplane.services.status_batch import StatusCombiner
from cellplane.state.db import Database

if TYPE_CHECKING:
    from cellplane.identity.oidc import OidcSettings
    from cellplane.identity.signing import TokenService

__all__ = ["Notifier", "Principal", "Services"]


class Notifier:
    """Wakes asyncio waiters (long polls, SSE, the controller) from any thread.

    Topics are strings such as `host:<id>`, `task:<id>`, `controller`. A topic's version is the
    value of one counter for all topics when it was last published (so a version is never
    given twice); a waiter passes the version it saw and returns as soon as it moves. Only the
    `MAX_TOPICS` most recently published topics keep theirs, so a server that runs tasks for
    months does not keep one per task: a forgotten topic reads 0 again, and a waiter that had
    seen its old version returns at once, once (it reads its state again, then waits anew).
    """

    MAX_TOPICS = 10_000

    def __init__(self) -> None:
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._counter = 0
        self._events: dict[str, list[asyncio.Event]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Several replicas: each publish is also sent to the others (`services.relay`).
        self.relay: Callable[[tuple[str, ...]], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def version(self, topic: str) -> int:
        return self._versions.get(topic, 0)

    def publish(self, *topics: str) -> None:
        if self.relay is not None and topics:
            self.relay(topics)
        self.publish_local(*topics)

    def publish_local(self, *topics: str) -> None:
        """Wake this process's waiters only (what another replica published)."""
        with self._lock:
            for t in topics:
                self._counter += 1
                self._versions[t] = self._counter
                self._versions.move_to_end(t)
            while len(self._versions) > self.MAX_TOPICS:
                self._versions.popitem(last=False)
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
        if self.version(topic) != seen:
            return self.version(topic)
        ev = asyncio.Event()
        self._events.setdefault(topic, []).append(ev)
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            waiters = self._events.get(topic)
            if waiters and ev in waiters:
                waiters.remove(ev)
                if not waiters:
                    del self._events[topic]
        return self.version(topic)


_TOKENS_LOCK = threading.Lock()


@dataclass
class Services:
    """Handles shared by routes, services and controllers of one server process."""

    db: Database
    data_dir: Path
    notifier: Notifier = field(default_factory=Notifier)
    # Host health thresholds: the server takes them from `ServerSettings` (6 s / 10 s by default,
    # CELLPLANE_HEARTBEAT_SUSPECT_S / _DOWN_S); these looser ones are for in-process use (tests
    # whose hosts send no heartbeats).
    heartbeat_suspect_s: float = 15.0
    heartbeat_down_s: float = 60.0
    # When this server started (the daemon sets it): a host that beat less than the DOWN
    # threshold before then is judged from then, so a restart of the server alone makes no
    # live host SUSPECT or DOWN. None: judged from the last beat only (in-process tests).
    watching_since: datetime | None = None
    # The URL clients reach the API at; issuers are `{public_url}/identity/{tenant}`. None: taken
    # from each request (in-process tests).
    public_url: str | None = None
    access_ttl_s: float = 300.0
    # The address Docker-compatible endpoints listen on (the server's own listen address).
    docker_listen_host: str = "127.0.0.1"
    # The OIDC provider's tunables (lockout, rate limit, lifetimes); None: its defaults.
    oidc: OidcSettings | None = None
    # Largest request body (413 above it, before it is parsed); image uploads have their own.
    max_body_bytes: int = 1024 * 1024
    max_image_bytes: int = 64 * 1024**3
    # The registries `docker pull`/`push` may use (ServerSettings.registries); none: refused.
    registries: tuple[Registry, ...] = ()
    # The host directories cells may bind-mount (ServerSettings.allowed_host_paths, parsed by
    # `host_paths.parse_allowed`); none: every host path is refused.
    allowed_host_paths: tuple[str, ...] = ()
    # Largest request headers, names and values together (431 above it).
    max_header_bytes: int = 32 * 1024
    # This replica's name among several servers on one PostgreSQL (`controller.leader`).
    replica: str = "server"
    # Whether this replica runs the controllers now (set by `controller.runtime`/`.leader`).
    leading: bool = False
    # Serve /docs, /redoc and /openapi.json (ServerSettings.api_docs).
    api_docs: bool = True
    # Admission's recent view of the hosts' capacity (`services.admission`).
    admission: AdmissionCache = field(default_factory=AdmissionCache, repr=False)
    # Agents' heartbeats waiting to be written in one transaction (`services.heartbeats`).
    heartbeats: HeartbeatBuffer = field(default_factory=HeartbeatBuffer, repr=False)
    # Host tokens checked lately, so that a beat need not read its host (`services.heartbeats`).
    host_tokens: VerifiedTokens = field(default_factory=VerifiedTokens, repr=False)
    # Agents' status reports applied together (`services.status_batch`).
    status_reports: StatusCombiner = field(default_factory=StatusCombiner, repr=False)
    _tokens: TokenService | None = field(default=None, repr=False)
    _sealer: Sealer | None = field(default=None, repr=False)

    @property
    def sealer(self) -> Sealer:
        """Seals the secrets the database keeps (cellplane.sealing; key in the data dir)."""
        if self._sealer is None:
            self._sealer = Sealer(self.data_dir)
        return self._sealer

    @property
    def tokens(self) -> TokenService:
        """Signing keys, issuers and verifiers, made on first use: joserfc and `cryptography`
        (~8 MB resident) load with the first access token the server verifies or issues."""
        if self._tokens is None:
            with _TOKENS_LOCK:  # one TokenService (one key ring per tenant) per Services
                if self._tokens is None:
                    from cellplane.identity.signing import TokenService

                    self._tokens = TokenService(
                        self.data_dir / "identity" / "keys", access_ttl_s=self.access_ttl_s
                    )
        return self._tokens

    @property
    def images_dir(self) -> Path:
        d = self.data_dir / "images"
        d.mkdir(parents=True, exist_ok=True)
        return d
