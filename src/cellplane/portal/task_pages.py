"""All tasks of a project (the last 200, newest first), filtered by state, with their progress
live over server-sent events as on the dashboard (`streams.tasks_events`, `?all=1`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import ValidationFailed
from cellplane.portal import data
from cellplane.portal.pages import _projects, layout
from cellplane.portal.streams import TASK_STATES
from cellplane.portal.web import caller, page, portal_of, work

__all__ = ["tasks_page"]


async def tasks_page(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    state = request.query_params.get("state") or None
    if state is not None and state not in TASK_STATES:
        raise ValidationFailed.field("state", f"must be one of {', '.join(TASK_STATES)}")

    def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "tasks")
        return projects, data.task_list(svc, c.principal, project, state)

    projects, items = await work(go)
    query = {"all": "1", **({"state": state} if state else {})}
    return page(
        request,
        "tasks.html",
        {
            **layout(c, projects, project, "tasks"),
            "title": f"{project}: tasks",
            "tasks": items,
            "states": TASK_STATES,
            "state": state or "",
            "stream": f"/portal/projects/{project}/tasks/events?{urlencode(query)}",
        },
        session=c.session,
    )
