"""The server's controller loop: wakes on demand (a new cell, a host joining) and on a timer.

The timer (1 s) bounds how late a host that stopped sending heartbeats is noticed DOWN and its
cells failed over (`services.moves.fail_over`, which reads a DOWN host's cells once per DOWN
transition); an idle pass is a few indexed reads.

Runs inside the API process as an asyncio task; the work itself runs in a worker thread because it
talks to the database synchronously. A failing pass is logged and retried on the next tick.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import structlog

from cellplane.controller.scheduling import schedule_pending
from cellplane.ids import utcnow
from cellplane.metrics import RECONCILE_SECONDS
from cellplane.services import moves, volume_moves
from cellplane.services.context import Services
from cellplane.services.failover_memo import FailoverMemo

__all__ = ["run_controller", "run_volume_mover"]

log = structlog.get_logger("cellplane.controller")


def _pass(svc: Services, started: datetime, memo: FailoverMemo) -> set[str]:
    """One pass: fail over the cells of DOWN hosts, place what waits, advance drains."""
    now = utcnow()
    topics = moves.fail_over(svc, now, watching_since=started, memo=memo)
    topics |= schedule_pending(svc, now)
    topics |= moves.drain_progress(svc, now)
    topics.discard("controller")  # this pass has just run
    return topics


async def run_controller(svc: Services, *, tick: float = 1.0) -> None:
    topic = "controller"
    seen = -1
    watching = utcnow()  # failover waits until heartbeats were watched for the DOWN threshold
    memo = FailoverMemo()  # the DOWN hosts whose cells were read (once per transition)
    while True:
        seen = svc.notifier.version(topic)
        started = time.perf_counter()
        try:
            topics = await asyncio.to_thread(_pass, svc, watching, memo)
            if topics:
                svc.notifier.publish(*topics)
        except Exception:
            log.exception("scheduling pass failed")
        RECONCILE_SECONDS.labels("schedule").observe(time.perf_counter() - started)
        await svc.notifier.wait(topic, seen, tick)


async def run_volume_mover(svc: Services, *, tick: float = 1.0) -> None:
    """Copies the volumes of cells that move (`services.volume_moves`), in a loop of its own: a
    long copy never delays failover or placement."""
    topic = "controller"
    while True:
        seen = svc.notifier.version(topic)
        try:
            topics = await asyncio.to_thread(volume_moves.advance, svc, utcnow())
            if topics:
                svc.notifier.publish(*topics)
        except Exception:
            log.exception("volume move pass failed")
        await svc.notifier.wait(topic, seen, tick)
