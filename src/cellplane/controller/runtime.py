"""The server process's background loops: cell placement (with failover and drains), volume
moves, the cluster executor and the service reconciler.

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
from cellplane.controller.loop import run_controller, run_volume_mover
from cellplane.controller.services import run_service_reconciler
from cellplane.services.context import Services

__all__ = ["background_loops", "install"]


@contextlib.asynccontextmanager
async def background_loops(svc: Services) -> AsyncIterator[None]:
    """Run the placement loop and the cluster executor until the context exits, then cancel them."""
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
