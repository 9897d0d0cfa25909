"""`GET /events` of a Docker-compatible endpoint: the project's container, volume and network
events as Docker's JSON-lines stream, from `since` (or now) until `until` (or the client leaves).

Container events come from the cells' tasks and exits (`event_views.cell_events`), which the
database keeps, so they survive the server and the containers. A volume's and a network's
`create` comes from its creation time; its `destroy` (and the `create` of one gone since) from
the audit log's record of its deletion (`docker_resources.deletions`), whether it was removed
through an endpoint, the REST API or the CLI. Another project's events are never read.
"""

from __future__ import annotations

import asyncio
import json
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

__all__ = ["routes"]

#: How often a following stream looks for new events, and how far back a look reaches (an
#: agent reports what it did a little after the fact).
POLL_S = 1.0
LOOKBACK = timedelta(minutes=5)
_ENDED_STATES = ("EXITED", "STOPPED", "FAILED")


def _resource_event(ns: int, kind: str, action: str, res: dict[str, Any]) -> ev.Event:
    """A volume's or network's event; `res`: its Cellplane view or its deletion's record."""
    name = res.get("docker_name") or res["name"]
    if kind == "volume":
        return ev.resource_event(ns, "volume", action, name, {"driver": "local"})
    attrs = {"name": name, "type": "bridge"}
    return ev.resource_event(ns, "network", action, rv.network_docker_id(res["id"]), attrs)


def _resource_events(
    ctx: EndpointContext, p: Principal, since: datetime | None, until: datetime | None
) -> list[ev.Event]:
    """The creates of the project's volumes and networks, and the creates and destroys of
    those deleted since `since`."""
    out: list[ev.Event] = []
    try:
        for vol in volumes.list_volumes(ctx.svc, p, ctx.project_id)["items"]:
            ns = ev.to_ns(vol.get("created_at"))
            if ns is not None:
                out.append(_resource_event(ns, "volume", "create", vol))
        for net in project_networks.list_networks(ctx.svc, p, ctx.project_id)["items"]:
            ns = ev.to_ns(net.get("created_at"))
            if ns is not None and not net["default"]:
                out.append(_resource_event(ns, "network", "create", net))
    except CellplaneError:
        return []  # a role without the right to read them sees container events only
    for gone in docker_resources.deletions(ctx.svc, ctx.project_id, since, until):
        for action, at in (("create", gone["created_at"]), ("destroy", gone["at"])):
            ns = ev.to_ns(at)
            if ns is not None:
                out.append(_resource_event(ns, gone["kind"], action, gone))
    return out


def _collect(
    ctx: EndpointContext, p: Principal, since: datetime | None, until: datetime | None
) -> list[ev.Event]:
    """Every event of the project that may lie between `since` and `until`, time ordered."""
    tasks = docker_resources.cell_tasks(ctx.svc, ctx.project_id, since, until)
    cells = docker_resources.cells_named(ctx.svc, ctx.project_id)
    removed = docker_resources.removed_cells(ctx.svc, ctx.project_id, since)
    for info in removed.values():
        if info["ended_at"] is None and info["state"] in _ENDED_STATES:
            # An ended cell's last change is the report of its end: the die's time.
            info["ended_at"] = info["updated_at"]
    health = docker_resources.health_events(ctx.svc, ctx.project_id, since, until)
    found = ev.cell_events(tasks, cells, removed, health)
    found += _resource_events(ctx, p, since, until)
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
