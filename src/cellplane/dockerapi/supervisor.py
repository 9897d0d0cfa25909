"""The server process's Docker-compatible listeners: one TLS port per endpoint in the database.

`cellplane.daemon.run_server` installs :func:`serve` in the app's background work (as it does the
controller loops); it reads the endpoints at start, then follows
`POST/DELETE /v1/projects/{p}/docker-endpoints` (the `docker-endpoints` topic, and a periodic
re-read), and closes every listener when the server stops. The listeners themselves
(`dockerapi.listeners`: aiohttp, the handlers, the CA code) are imported with the first endpoint,
so a server without one never loads them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import structlog

from cellplane.identity.authn import Authenticator
from cellplane.services import docker_endpoints
from cellplane.services.context import Services

if TYPE_CHECKING:
    from cellplane.dockerapi.listeners import Listeners

__all__ = ["install", "serve"]

log = structlog.get_logger("cellplane.dockerapi")

#: How often the table is re-read even without a change notice (another server process).
RESYNC_S = 30.0


class _Supervisor:
    def __init__(self, svc: Services, authn: Authenticator) -> None:
        self.svc = svc
        self.authn = authn
        self.listeners: Listeners | None = None

    async def pass_once(self) -> None:
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(None, docker_endpoints.listeners, self.svc)
        if self.listeners is None:
            if not rows:
                return
            from cellplane.dockerapi.listeners import Listeners

            self.listeners = Listeners(self.svc, self.authn)
        await self.listeners.reconcile(rows)

    async def run(self) -> None:
        while True:
            seen = self.svc.notifier.version(docker_endpoints.TOPIC)
            try:
                await self.pass_once()
            except Exception:
                log.exception("docker endpoints: reconcile failed")
            await self.svc.notifier.wait(docker_endpoints.TOPIC, seen, RESYNC_S)

    async def close(self) -> None:
        if self.listeners is not None:
            await self.listeners.close()


@contextlib.asynccontextmanager
async def serve(svc: Services, authn: Authenticator) -> AsyncIterator[None]:
    """Serve every endpoint while the context is open."""
    supervisor = _Supervisor(svc, authn)
    task = asyncio.create_task(supervisor.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await supervisor.close()


def install(
    background: list[Callable[[], contextlib.AbstractAsyncContextManager[None]]],
    svc: Services,
    authn: Authenticator,
) -> None:
    """Add the listeners to an app's ``app.state.background`` (see `controller.runtime.install`)."""
    background.append(lambda: serve(svc, authn))
