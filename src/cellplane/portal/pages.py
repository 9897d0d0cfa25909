"""The developer's pages: dashboard (quota bars, recent tasks), cells (list with filters, detail,
create wizard). Each route checks the session, then calls the services in the thread pool."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import NotFound, ValidationFailed
from cellplane.portal import data, forms
from cellplane.portal.web import Caller, caller, check_csrf, page, portal_of, redirect, work
from cellplane.services.context import Principal, Services

__all__ = [
    "cell_action",
    "cell_detail",
    "cell_new",
    "cell_new_post",
    "cells_list",
    "dashboard",
    "home",
    "layout",
]

CELL_STATES = (
    "PENDING", "SCHEDULED", "CREATING", "STARTING", "RUNNING", "STOPPING", "STOPPED", "EXITED",
    "FAILED", "DELETING",
)  # fmt: skip
#: Permissions the templates ask about for the current project (what buttons to show).
_SHOWN = ("cells:write", "volumes:write", "quotas:write")
#: Permissions of the operators' pages (hosts, tenants, the directory, the audit log).
_TENANT_WIDE = (
    "hosts:read", "hosts:write", "tenants:read", "tenants:write", "projects:read",
    "projects:write", "users:read", "users:write", "groups:read", "groups:write",
    "clients:read", "clients:write", "roles:read", "roles:write", "audit:read", "self",
    "images:read", "images:write",
)  # fmt: skip


def _projects(svc: Services, p: Principal) -> list[dict[str, Any]]:
    if not p.can("projects:read"):
        return []
    from cellplane.services import projects

    return [{"id": i["id"], "name": i["name"]} for i in projects.list_projects(svc, p)["items"]]


def layout(
    c: Caller, projects: list[dict[str, Any]], project: str | None, nav: str
) -> dict[str, Any]:
    """Values of base.html: the project switcher, the navigation and what the caller may do in
    the current project (a viewer sees no button that would fail)."""
    current = next((x for x in projects if x["name"] == project), None)
    p = c.principal
    may = {perm: (p.can_in(current["id"], perm) if current else p.can(perm)) for perm in _SHOWN}
    for perm in _TENANT_WIDE:  # the operators' pages: not of one project
        may[perm] = p.can(perm)
    if project is not None and current is None:
        raise NotFound(f"no project {project!r}")
    return {
        "projects": projects,
        "project": project,
        "nav": nav,
        "may": may,
        "roles": ", ".join(p.roles) or "project roles only",
    }


async def home(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    projects = await work(_projects, svc, c.principal)
    chosen = request.query_params.get("project", "")
    names = [x["name"] for x in projects]
    if chosen in names:
        return redirect(f"/portal/projects/{quote(chosen)}/")
    if names:
        target = "default" if "default" in names else names[0]
        return redirect(f"/portal/projects/{quote(target)}/")
    return page(
        request,
        "message.html",
        {
            **layout(c, projects, None, ""),
            "title": "No project",
            "message": "You have no role in any project of this tenant yet.",
        },
        session=c.session,
    )


async def dashboard(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "dashboard")  # 404 before any other read
        return projects, data.dashboard(svc, c.principal, project)

    projects, board = await work(go)
    return page(
        request,
        "dashboard.html",
        {**layout(c, projects, project, "dashboard"), "title": f"{project}: dashboard", **board},
        session=c.session,
    )


async def cells_list(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    q = request.query_params
    state = q.get("state") or None
    if state is not None and state not in CELL_STATES:
        raise ValidationFailed.field("state", f"must be one of {', '.join(CELL_STATES)}")
    name = q.get("name") or None
    cursor = q.get("cursor") or None

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "cells")
        return projects, data.cell_page(
            svc, c.principal, project, state=state, name=name, cursor=cursor
        )

    projects, listing = await work(go)
    return page(
        request,
        "cells.html",
        {
            **layout(c, projects, project, "cells"),
            "title": f"{project}: cells",
            "cells": listing["items"],
            "next_cursor": listing["next_cursor"],
            "states": CELL_STATES,
            "state": state or "",
            "name": name or "",
        },
        session=c.session,
    )


async def cell_detail(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    cell_id = request.path_params["cell_id"]

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        view = data.cell(svc, c.principal, cell_id)
        return _projects(svc, c.principal), view

    projects, view = await work(go)
    return page(
        request,
        "cell.html",
        {**layout(c, projects, view["project"], "cells"), "title": view["name"], "cell": view},
        session=c.session,
    )


async def cell_action(request: Request) -> Response:
    """Start, stop, restart or delete from the cell's page; back to it (or to the list)."""
    c = await caller(request)
    svc = portal_of(request).svc
    cell_id = request.path_params["cell_id"]
    form = await request.form()
    check_csrf(request, c.session, form)
    action = str(form.get("action", ""))
    if action == "delete" and form.get("confirm") != "yes":  # not from the confirmation page
        return redirect(f"/portal/cells/{quote(cell_id)}/delete")
    view = await work(data.cell, svc, c.principal, cell_id)
    await work(data.cell_action, svc, c.principal, cell_id, action)
    if action == "delete":
        return redirect(f"/portal/projects/{quote(view['project'])}/cells")
    return redirect(f"/portal/cells/{quote(cell_id)}")


def _wizard(
    request: Request,
    c: Caller,
    projects: list[dict[str, Any]],
    project: str,
    choices: dict[str, Any],
    form: dict[str, str],
    errors: forms.FormErrors,
    status: int = 200,
) -> Response:
    return page(
        request,
        "cell_new.html",
        {
            **layout(c, projects, project, "cells"),
            "title": f"{project}: new cell",
            "form": form,
            "errors": errors,
            "general": errors.get("", []),
            **choices,
        },
        status=status,
        session=c.session,
    )


async def cell_new(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "cells")
        data.needs(c.principal, "cells:write")
        return projects, data.wizard_choices(svc, c.principal)

    projects, choices = await work(go)
    form = {"key": secrets.token_urlsafe(16), "restart": "never"}
    return _wizard(request, c, projects, project, choices, form, {})


async def cell_new_post(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    raw = await request.form()
    check_csrf(request, c.session, raw)
    form = {k: str(v) for k, v in raw.items() if isinstance(v, str)}
    key = form.get("key", "")
    if not 8 <= len(key) <= 64:
        key = secrets.token_urlsafe(16)
        form["key"] = key
    body, errors = forms.cell_body(form)

    def go() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "cells")
        choices = data.wizard_choices(svc, c.principal)
        if body is None:
            return projects, choices, None
        return projects, choices, data.create_cell(svc, c.principal, project, body, key)

    try:
        projects, choices, task = await work(go)
    except ValidationFailed as exc:  # the service's own checks (image, flavor, volumes, ...)
        projects, choices = await work(
            lambda: (_projects(svc, c.principal), data.wizard_choices(svc, c.principal))
        )
        errors = forms.errors_of(exc.errors)
        return _wizard(request, c, projects, project, choices, form, errors, 422)
    if task is None:
        return _wizard(request, c, projects, project, choices, form, errors, 422)
    return redirect(f"/portal/cells/{quote(task['entity']['id'])}")
