"""The service reconciler: a pass over every service each `tick` (and when one changes).

Each service's pass (`services.service_reconcile.run_pass`) is its own transaction: it replaces
failed or lost cells, goes on with rollouts as cells become ready, removes the cells of deleted
services, and advances the service's task. A refusal (quota, capacity) is kept on the service
(`message`) and retried on the next pass.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import select

from cellplane.ids import utcnow
from cellplane.services.context import Services
from cellplane.services.service_reconcile import SERVICES_TOPIC, is_settled, run_pass
from cellplane.state.service_models import Service

__all__ = ["reconcile_services", "run_service_reconciler"]

log = structlog.get_logger("cellplane.controller.services")


def reconcile_services(svc: Services) -> int:
    """One pass over every service; returns how many had something to do."""
    with svc.db.reader() as s:
        now = utcnow()
        ids = [
            r.id
            for r in s.scalars(select(Service).order_by(Service.id))
            if not is_settled(s, r, now)
        ]
    busy = 0
    for service_id in ids:
        try:
            with svc.db.session() as s:
                # One pass per service at a time (a no-op on SQLite, whose writers are serialised).
                service = s.get(Service, service_id, with_for_update=True)
                if service is None:
                    continue
                plan, topics = run_pass(svc, s, service, utcnow())
        except Exception:
            log.exception("service reconcile failed", service=service_id)
            continue
        if plan.actions:
            busy += 1
        if topics:
            svc.notifier.publish(*topics)
    return busy


async def run_service_reconciler(svc: Services, *, tick: float = 1.0) -> None:
    while True:
        seen = svc.notifier.version(SERVICES_TOPIC)
        try:
            await asyncio.to_thread(reconcile_services, svc)
        except Exception:
            log.exception("service reconciler pass failed")
        await svc.notifier.wait(SERVICES_TOPIC, seen, tick)
