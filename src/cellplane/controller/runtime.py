"""The server process's background loops: cell placement (with failover and drains), volume
moves, the cluster executor and the service reconciler; with several replicas on PostgreSQL
only in the elected leader (`controller.leader`).

Installed by the server entry (:func:`cellplane.daemon.run_server`) on the app it serves, with
:func:`install`; the app's lifespan then runs :func:`background_loops` after its own setup
(notifier bound to the event loop, thread pools sized), so the loops start and stop with
uvicorn's lifespan. The app factory itself starts nothing: unit tests build apps without loops
and drive the controller by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from cellplane.controller.clusters import run_cluster_executor
from cellplane.controller.leader import lead
from cellplane.controller.loop import run_controller, run_volume_mover
from cellplane.controller.services import run_service_reconciler
from cellplane.metrics import LEADER
from cellplane.services.context import Services

__all__ = ["background_loops", "controllers", "install"]


@contextlib.asynccontextmanager
async def background_loops(svc: Services) -> AsyncIterator[None]:
    """Run the controllers until the context exits: on SQLite (one server) always; on
    PostgreSQL while this replica is the elected leader (`controller.leader`)."""
    if svc.db.is_sqlite:
        async with controllers(svc):
            LEADER.set(1)
            svc.leading = True
            try:
                yield
            finally:
                LEADER.set(0)
                svc.leading = False
        return
    election = asyncio.create_task(lead(svc, lambda: controllers(svc), me=svc.replica))
    try:
        yield
    finally:
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election


@contextlib.asynccontextmanager
async def controllers(svc: Services) -> AsyncIterator[None]:
    """Run the placement loop, the volume mover, the cluster executor and the service
    reconciler until the context exits, then cancel them."""
    loops = [
        asyncio.create_task(run_controller(svc)),
        asyncio.create_task(run_volume_mover(svc)),
        asyncio.create_task(run_cluster_executor(svc)),
        asyncio.create_task(run_service_reconciler(svc)),
    ]
    try:
        yield
    finally:
        for task in loops:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def install(
    background: list[Callable[[], contextlib.AbstractAsyncContextManager[None]]], svc: Services
) -> None:
    """Add the loops to an app's ``app.state.background`` (:func:`cellplane.api.app.create_app`),
    which its lifespan enters: the loops then run as long as uvicorn serves the app."""
    background.append(lambda: background_loops(svc))
