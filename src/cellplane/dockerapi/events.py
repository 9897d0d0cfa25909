"""`GET /events` of a Docker-compatible endpoint: the project's container, volume and network
events as Docker's JSON-lines stream, from `since` (or now) until `until` (or the client leaves).

Container events come from the cells' tasks and exits (`event_views.cell_events`), which the
database keeps, so they survive the server and the containers. Volumes and networks have no
history in the database beyond their creation time: their `create` events come from it, their
`destroy` events (and those of volumes and networks gone since) from this process's journal of
what its endpoints did, kept while the server runs. Another project's events are never read.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from cellplane.dockerapi import event_views as ev
from cellplane.dockerapi import resource_views as rv
from cellplane.dockerapi.base import EndpointContext, blocking, context, principal
from cellplane.errors import CellplaneError
from cellplane.ids import utcnow
from cellplane.services import docker_resources, project_networks, volumes
from cellplane.services.context import Principal

__all__ = ["note_network", "note_volume", "remember", "remember_cell", "routes"]

#: How often a following stream looks for new events, and how far back a look reaches (an
#: agent reports what it did a little after the fact).
POLL_S = 1.0
LOOKBACK = timedelta(minutes=5)
_ENDED_STATES = ("EXITED", "STOPPED", "FAILED")
_JOURNAL_LEN = 2000
_REMEMBERED_LEN = 5000
# project id -> its volume and network events made through the endpoint; its removed cells.
_journal: dict[str, deque[ev.Event]] = {}
_remembered: dict[str, OrderedDict[str, dict[str, Any]]] = {}


def _now_ns() -> int:
    t = utcnow()
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def note_volume(project_id: str, action: str, name: str) -> None:
    """Record a volume's create or destroy (done through the endpoint)."""
    journal = _journal.setdefault(project_id, deque(maxlen=_JOURNAL_LEN))
    journal.append(ev.resource_event(_now_ns(), "volume", action, name, {"driver": "local"}))


def note_network(project_id: str, action: str, network_id: str, name: str) -> None:
    """Record a network's create or destroy (done through the endpoint)."""
    journal = _journal.setdefault(project_id, deque(maxlen=_JOURNAL_LEN))
    attrs = {"name": name, "type": "bridge"}
    journal.append(ev.resource_event(_now_ns(), "network", action, network_id, attrs))


def remember_cell(project_id: str, cell: dict[str, Any]) -> None:
    """Keep a cell's name, image, labels and last exit for its events after it is removed."""
    known = _remembered.setdefault(project_id, OrderedDict())
    known[cell["id"]] = {
        "name": cell.get("name") or "",
        "image": cell.get("image") or "",
        "labels": dict(cell.get("labels") or {}),
        "exit_code": cell.get("exit_code"),
        "ended_at": cell.get("ended_at"),
    }
    while len(known) > _REMEMBERED_LEN:
        known.popitem(last=False)


def remember(ctx: EndpointContext, cell_id: str) -> None:
    """Before a cell is removed through the endpoint: keep what its events need (its name, and
    its last exit, which the database forgets with the cell)."""
    for cid, info in docker_resources.cells_named(ctx.svc, ctx.project_id, cell_id).items():
        if info["ended_at"] is None and info["state"] in _ENDED_STATES:
            # An ended cell's last change is the report of its end: the die's time.
            info["ended_at"] = info["updated_at"]
        remember_cell(ctx.project_id, {"id": cid, **info})


def _resource_creates(ctx: EndpointContext, p: Principal) -> list[ev.Event]:
    out: list[ev.Event] = []
    try:
        for vol in volumes.list_volumes(ctx.svc, p, ctx.project_id)["items"]:
            ns = ev.to_ns(vol.get("created_at"))
            if ns is not None:
                attrs = {"driver": "local"}
                out.append(ev.resource_event(ns, "volume", "create", vol["name"], attrs))
        for net in project_networks.list_networks(ctx.svc, p, ctx.project_id)["items"]:
            ns = ev.to_ns(net.get("created_at"))
            if ns is not None and not net["default"]:
                nid = rv.network_docker_id(net["id"])
                attrs = {"name": net["name"], "type": "bridge"}
                out.append(ev.resource_event(ns, "network", "create", nid, attrs))
    except CellplaneError:
        return []  # a role without the right to read them sees container events only
    return out


def _collect(
    ctx: EndpointContext, p: Principal, since: datetime | None, until: datetime | None
) -> list[ev.Event]:
    """Every event of the project that may lie between `since` and `until`, time ordered."""
    tasks = docker_resources.cell_tasks(ctx.svc, ctx.project_id, since, until)
    cells = docker_resources.cells_named(ctx.svc, ctx.project_id)
    remembered = _remembered.setdefault(ctx.project_id, OrderedDict())
    for cell_id, info in cells.items():
        remember_cell(ctx.project_id, {"id": cell_id, **info})
    health = docker_resources.health_events(ctx.svc, ctx.project_id, since, until)
    found = ev.cell_events(tasks, cells, dict(remembered), health)
    journal = list(_journal.get(ctx.project_id, ()))
    noted = {(e["Type"], e["Action"], e["Actor"]["ID"]) for _, e in journal}
    for ns, e in _resource_creates(ctx, p):
        if (e["Type"], "create", e["Actor"]["ID"]) not in noted:
            found.append((ns, e))
    found.extend(journal)
    return sorted(found, key=lambda item: item[0])


def _key(e: dict[str, Any]) -> tuple[str, str, str, int]:
    return (e["Type"], e["Action"], e["Actor"]["ID"], int(e["timeNano"]))


async def events(request: web.Request) -> web.StreamResponse:
    ctx, p = context(request), principal(request)
    since = ev.parse_event_time(request.query.get("since"), "since")
    until = ev.parse_event_time(request.query.get("until"), "until")
    filters = ev.parse_event_filters(request.query.get("filters"))
    started = utcnow()
    lo = since or started  # without `since`, only what happens from now on (as Docker)
    lo_ns = ev.to_ns(lo.isoformat()) or 0
    hi_ns = ev.to_ns(until.isoformat()) if until is not None else None
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    seen: dict[tuple[str, str, str, int], int] = {}
    first = True
    while True:
        if request.transport is None or request.transport.is_closing():
            break  # the client left (aiohttp does not cancel the handler for it)
        now = utcnow()
        query_from = lo if first else max(lo, now - LOOKBACK)
        first = False
        for ns, e in await blocking(_collect, ctx, p, query_from, until):
            if ns < lo_ns or (hi_ns is not None and ns > hi_ns) or _key(e) in seen:
                continue
            seen[_key(e)] = ns
            if ev.event_matches(e, filters):
                await resp.write(json.dumps(e).encode() + b"\n")
        if until is not None and now >= until:
            break
        horizon = ev.to_ns((now - 2 * LOOKBACK).isoformat()) or 0
        seen = {k: t for k, t in seen.items() if t >= horizon}
        wait = POLL_S if until is None else min(POLL_S, (until - now).total_seconds() + 0.05)
        await asyncio.sleep(max(wait, 0.05))
    if request.transport is not None and not request.transport.is_closing():
        await resp.write_eof()
    return resp


def routes() -> list[tuple[str, str, Any]]:
    return [("GET", "/events", events)]
