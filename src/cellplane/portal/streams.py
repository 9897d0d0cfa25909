"""Server-sent events of the portal: a cell's status block as it changes, and its logs live.

`/portal/cells/{id}/events` sends the status block (HTML rendered here, escaped by Jinja2) on
every change of the cell (the notifier's `cell:{id}` topic). `/portal/cells/{id}/logs` sends the
last lines and then every new line from the cell's agent (`services.agent_proxy`); while the cell
has no container yet it says so and asks the browser to come back (`retry`), and each stream
starts with `reset` so a reconnect never shows a line twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cellplane.errors import CellplaneError, ValidationFailed
from cellplane.portal import data
from cellplane.portal.web import caller, portal_of, render, work
from cellplane.services import agent_proxy, cell_access, tasks

__all__ = ["TASK_STATES", "Alive", "cell_events", "cell_logs", "sse", "tasks_events"]

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_TAIL = 500
_KEEPALIVE_S = 15.0
_TASKS_IDLE_S = 5.0
#: The states a task goes through (`services.tasks`), for the tasks page's filter.
TASK_STATES = ("QUEUED", "STARTED", "COMPLETED", "ERROR")


class Alive:
    """Whether a stream's session still exists (a stream ends with its session), read from the
    sessions' table at most every `every_s` (a log stream asks at each chunk)."""

    def __init__(self, request: Request, session_id: str, every_s: float = 1.0) -> None:
        self.store = portal_of(request).store
        self.session_id = session_id
        self.every_s = every_s
        self._checked = time.monotonic()
        self._alive = True

    async def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= self.every_s:
            self._checked = now
            self._alive = await work(self.store.get, self.session_id) is not None
        return self._alive


def sse(event: str, text: str) -> str:
    """One event; every line of `text` is a `data:` line (the browser joins them with \\n)."""
    lines = text.split("\n")
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def status_html(cell: dict[str, Any]) -> str:
    return render("_cell_status.html", {"cell": cell})


async def cell_events(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    cell_id = request.path_params["cell_id"]
    first = await work(data.cell, svc, c.principal, cell_id)
    topic = f"cell:{cell_id}"

    alive = Alive(request, c.session.id)

    async def stream() -> AsyncIterator[str]:
        seen = svc.notifier.version(topic)
        view: dict[str, Any] | None = first
        last = ""
        yield "retry: 2000\n\n"
        while view is not None:
            body = status_html(view)
            if body != last:
                yield sse("status", body)
                last = body
            new = await svc.notifier.wait(topic, seen, _KEEPALIVE_S)
            if await request.is_disconnected() or not await alive():
                return
            if new == seen:
                yield ": keep-alive\n\n"
            seen = new
            try:
                view = await work(data.cell, svc, c.principal, cell_id)
            except CellplaneError:  # deleted meanwhile
                yield sse("gone", json.dumps({"id": cell_id}))
                return

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)


async def tasks_events(request: Request) -> Response:
    """The dashboard's recent tasks whenever they change: woken by the first unfinished task's
    topic, and looking again every few seconds for new tasks."""
    c = await caller(request)
    svc = portal_of(request).svc
    project = request.path_params["project"]
    # The dashboard's 10 recent tasks, or the tasks page's (`?all=1`, of one `state`).
    every = request.query_params.get("all") == "1"
    state = request.query_params.get("state") or None
    if state is not None and state not in TASK_STATES:
        raise ValidationFailed.field("state", f"must be one of {', '.join(TASK_STATES)}")

    def read() -> list[dict[str, Any]]:
        if every:
            return data.task_list(svc, c.principal, project, state)
        data.needs(c.principal, "tasks:read")
        items: list[dict[str, Any]] = tasks.list_tasks(svc, c.principal, project, 10)["items"]
        return items

    first = await work(read)

    alive = Alive(request, c.session.id)

    async def stream() -> AsyncIterator[str]:
        items = first
        last = render("_tasks.html", {"tasks": items, "base": "/portal"})
        yield "retry: 2000\n\n"
        while True:
            running = [t for t in items if t["state"] not in tasks.TERMINAL]
            topic = f"task:{running[0]['id']}" if running else "controller"
            seen = svc.notifier.version(topic)
            await svc.notifier.wait(topic, seen, 1.0 if running else _TASKS_IDLE_S)
            if await request.is_disconnected() or not await alive():
                return
            items = await work(read)
            body = render("_tasks.html", {"tasks": items, "base": "/portal"})
            if body != last:
                yield sse("status", body)
                last = body

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)


async def cell_logs(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    cell_id = request.path_params["cell_id"]
    data.needs(c.principal, "cells:read")
    client: httpx.AsyncClient = portal_of(request).parent.state.agent_client
    try:
        target = await work(cell_access.locate, svc, c.principal, cell_id)
        chunks = await agent_proxy.open_logs(client, target, tail=_TAIL, follow=True)
    except CellplaneError as exc:
        note = f"No logs yet: {exc.detail}"

        async def waiting() -> AsyncIterator[str]:
            yield "retry: 2000\n\n" + sse("wait", note)

        return StreamingResponse(waiting(), media_type="text/event-stream", headers=_HEADERS)

    alive = Alive(request, c.session.id)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n" + sse("reset", "")
        partial = ""
        async for chunk in chunks:
            if not await alive():
                return  # signed out (or the session ended) while watching
            text = partial + chunk.decode("utf-8", "replace")
            lines = text.split("\n")
            partial = lines.pop()
            if lines:
                yield sse("log", "\n".join(lines))
        if partial:
            yield sse("log", partial)
        yield sse("end", "")

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)
