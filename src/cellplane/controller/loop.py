"""The server's controller loop: wakes on demand (a new cell, a host joining) and on a timer.

Runs inside the API process as an asyncio task; the work itself runs in a worker thread because it
talks to the database synchronously. A failing pass is logged and retried on the next tick.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from cellplane.controller.scheduling import schedule_pending
from cellplane.ids import utcnow
from cellplane.metrics import RECONCILE_SECONDS
from cellplane.services.context import Services

__all__ = ["run_controller"]

log = structlog.get_logger("cellplane.controller")


async def run_controller(svc: Services, *, tick: float = 5.0) -> None:
    topic = "controller"
    seen = -1
    while True:
        seen = svc.notifier.version(topic)
        started = time.perf_counter()
        try:
            topics = await asyncio.to_thread(schedule_pending, svc, utcnow())
            if topics:
                svc.notifier.publish(*topics)
        except Exception:
            log.exception("scheduling pass failed")
        RECONCILE_SECONDS.labels("schedule").observe(time.perf_counter() - started)
        await svc.notifier.wait(topic, seen, tick)
