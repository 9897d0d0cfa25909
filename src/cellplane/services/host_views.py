"""What the API and the scheduler see of hosts: state (READY/SUSPECT/DOWN/MAINTENANCE) with its
reason, the isolation classes offered, usage by host, the scheduler's snapshot, and the host views.

Split from `services.hosts` (registration and the agent protocol), which re-exports these names.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cellplane import scheduler
from cellplane.errors import NotFound
from cellplane.ids import utcnow
from cellplane.services import capacity
from cellplane.services.context import Services
from cellplane.services.views import host_view
from cellplane.state.models import Cell, Host

__all__ = [
    "get_host",
    "host_state",
    "host_status",
    "isolation_offered",
    "list_hosts",
    "snapshot",
    "usage_by_host",
]


def host_status(host: Host, now: datetime, svc: Services) -> tuple[str, str | None]:
    """The host's state (READY/SUSPECT/DOWN/MAINTENANCE) and, unless READY, why."""
    if host.revoked_at is not None:
        return "DOWN", f"revoked at {host.revoked_at.isoformat()}: refused until it joins again"
    if host.maintenance:
        return "MAINTENANCE", "in maintenance: takes no new cells"
    hb = host.last_heartbeat
    if hb is not None and hb.tzinfo is None:  # SQLite returns naive datetimes, written in UTC
        hb = hb.replace(tzinfo=now.tzinfo)
    heard = svc.heartbeats.heard(host.id)  # received here, maybe not written yet
    if heard is not None and (hb is None or heard > hb):
        hb = heard
    if hb is None:
        return "DOWN", "its agent never sent a heartbeat"
    started = svc.watching_since
    if (
        started is not None
        and hb < started
        and (started - hb).total_seconds() < svc.heartbeat_down_s
    ):
        # It beat shortly before this server started: the beats sent while the server was
        # down were lost, not missed; judged from the start (a host silent for longer, DOWN
        # before the server was, stays so).
        hb = started
    age = (now - hb).total_seconds()
    if age > svc.heartbeat_down_s:
        return "DOWN", f"no heartbeat for {age:.0f} s"
    if age > svc.heartbeat_suspect_s:
        return "SUSPECT", f"no heartbeat for {age:.0f} s: takes no new cells"
    if host.fence_revision > host.fenced_revision:
        return "SUSPECT", (
            "back after being DOWN: its agent is removing the containers of cells that were "
            "moved away meanwhile (fencing); takes no new cells until it confirms"
        )
    if host.engine_state == "DOWN":
        since = f" since {host.engine_since.isoformat()}" if host.engine_since else ""
        why = f": {host.engine_message}" if host.engine_message else ""
        return "SUSPECT", (
            f"container engine down{since}{why}; takes no new cells until it is back "
            "(its agent restarts it)"
        )
    return "READY", None


def host_state(host: Host, now: datetime, svc: Services) -> str:
    return host_status(host, now, svc)[0]


def isolation_offered(reported: list[str] | None) -> list[str]:
    """The known classes an agent reported, weakest first; an older agent runs `standard`."""
    got = set(reported or ["standard"])
    return [c for c in scheduler.ISOLATION_CLASSES if c in got] or ["standard"]


def _host_view(host: Host, now: datetime, svc: Services, usage: dict[str, Any]) -> dict[str, Any]:
    state, reason = host_status(host, now, svc)
    return {
        **host_view(host, state, usage),
        "state_reason": reason,
        "isolation": list(host.isolation or ["standard"]),
        "isolation_detail": host.isolation_detail,
        "engine": {
            "state": host.engine_state or "UP",
            "since": host.engine_since.isoformat() if host.engine_since else None,
            # While DOWN: why; once UP again: the last failure, kept for the operator.
            "message": host.engine_message,
            "outages": host.engine_outages or 0,  # times it went down and came back
        },
    }


@functools.cache
def _statements() -> tuple[Any, Any, Any, Any]:
    """The usage, resting-count, detail and host statements (built once: immutable, and
    building them cost about as much as running them on a small deployment)."""
    usage = (
        select(
            Cell.host_id,
            func.sum(Cell.cpu),
            func.sum(Cell.memory_mb),
            func.sum(Cell.disk_gb),
            func.count(Cell.id),
        )
        .where(capacity.reserves())
        .group_by(Cell.host_id)
    )
    resting = (
        select(Cell.host_id, func.count(Cell.id))
        .where(Cell.host_id.is_not(None), ~capacity.reserves())
        .group_by(Cell.host_id)
    )
    detail = select(Cell.host_id, Cell.ports, Cell.labels).where(capacity.reserves())
    return usage, resting, detail, select(Host).order_by(Host.id)


def usage_by_host(s: Session, *, stopped: bool = True) -> dict[str, dict[str, Any]]:
    """What the cells that reserve capacity (`services.capacity`) use on each host; `cells` counts
    them (stopped and ended cells are not counted: they reserve nothing). `stopped`: also count
    those (`stopped_cells`), which the views show and the scheduler does not need."""
    usage_q, resting_q, _, _ = _statements()
    rows = s.execute(usage_q).all()
    resting: dict[str, int] = dict(s.execute(resting_q).all()) if stopped else {}
    out = {
        h: {"cpu": float(c or 0), "memory_mb": int(m or 0), "disk_gb": int(d or 0), "cells": int(n)}
        for h, c, m, d, n in rows
        if h is not None
    }
    for h, n in resting.items():
        out.setdefault(str(h), _zero())["stopped_cells"] = int(n)
    return {h: {"stopped_cells": 0, **u} for h, u in out.items()}


def snapshot(
    s: Session,
    svc: Services,
    now: datetime,
    *,
    detail: bool = True,
    detail_project: str | None = None,
) -> list[scheduler.HostSnapshot]:
    """The scheduler's view of every host: capacity, what placed cells use, published ports.
    Without ``detail``, no ports and no cells' labels (one aggregate query instead of a row per
    placed cell): enough for a request that publishes no port and has no affinity.
    ``detail_project``: the ports and labels of that project's cells only (a service's spread
    term selects its own cells, all in its project)."""
    usage = usage_by_host(s, stopped=False)
    ports: dict[str, set[tuple[str, int]]] = defaultdict(set)
    labels: dict[str, list[dict[str, str]]] = defaultdict(list)
    _, _, detail_q, hosts_q = _statements()
    rows: Any = ()
    if detail_project is not None:
        rows = s.execute(detail_q.where(Cell.project_id == detail_project))
    elif detail:
        rows = s.execute(detail_q)
    for host_id, cell_ports, cell_labels in rows:
        labels[host_id].append(dict(cell_labels or {}))
        for p in cell_ports or []:
            if p.get("host_port"):
                ports[host_id].add((p.get("protocol", "tcp"), int(p["host_port"])))
    out = []
    for h in s.scalars(hosts_q):
        u = usage.get(h.id, {"cpu": 0.0, "memory_mb": 0, "disk_gb": 0})
        out.append(
            scheduler.HostSnapshot(
                id=h.id,
                state=host_state(h, now, svc),
                capacity=scheduler.Resources(h.cpu, h.memory_mb, h.disk_gb),
                used=scheduler.Resources(u["cpu"], u["memory_mb"], u["disk_gb"]),
                labels=dict(h.labels or {}),
                zone=h.zone,
                used_ports=frozenset(ports.get(h.id, set())),
                cells=tuple(labels.get(h.id, ())),
                isolation=frozenset(h.isolation or ["standard"]),
            )
        )
    return out


def list_hosts(svc: Services) -> list[dict[str, Any]]:
    now = utcnow()
    with svc.db.reader() as s:
        usage = usage_by_host(s)
        return [
            _host_view(h, now, svc, usage.get(h.id, _zero()))
            for h in s.scalars(select(Host).order_by(Host.id))
        ]


def _zero() -> dict[str, Any]:
    return {"cpu": 0.0, "memory_mb": 0, "disk_gb": 0, "cells": 0, "stopped_cells": 0}


def get_host(svc: Services, host_id: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        h = s.get(Host, host_id) or s.scalar(select(Host).where(Host.name == host_id))
        if h is None:
            raise NotFound(f"host {host_id!r} does not exist")
        return _host_view(h, utcnow(), svc, usage_by_host(s).get(h.id, _zero()))
