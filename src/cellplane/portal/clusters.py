"""Clusters: the project's clusters, the catalog's distros (deployable here or why not), create
from a distro, and a cluster's page with its nodes' progress live (SSE)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cellplane.errors import CellplaneError, Conflict, ValidationFailed
from cellplane.portal import data, forms
from cellplane.portal.pages import _projects, layout
from cellplane.portal.streams import Alive, sse
from cellplane.portal.web import Caller, caller, check_csrf, page, portal_of, redirect, render, work
from cellplane.services.clusters import ClusterCreate
from cellplane.services.context import Services

__all__ = [
    "cluster_detail",
    "cluster_events",
    "clusters_page",
    "clusters_post",
    "detail_page",
    "list_page",
]

_FIELDS = ("name", "distro")
#: How often the cluster page's stream looks again while nothing wakes it (node progress is
#: written by the executor under the cluster's and its task's topics; one wait covers one).
_POLL_S = 1.0


async def list_page(
    request: Request,
    c: Caller,
    svc: Services,
    project: str,
    form: dict[str, str],
    errors: forms.FormErrors,
    status: int = 200,
    upload: dict[str, str] | None = None,
    upload_errors: forms.FormErrors | None = None,
) -> Response:
    """The clusters page; with one form's values and errors after a refused create (the
    distro form: `form`, `errors`; the spec file form: `upload`, `upload_errors`)."""

    def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "clusters")
        return projects, data.cluster_list(svc, c.principal, project), data.distros(c.principal)

    projects, clusters, distros = await work(go)
    return page(
        request,
        "clusters.html",
        {
            **layout(c, projects, project, "clusters"),
            "title": f"{project}: clusters",
            "clusters": clusters,
            "distros": distros,
            "form": form,
            "errors": errors,
            "general": errors.get("", []),
            "upload": upload or {"key": secrets.token_urlsafe(16)},
            "upload_errors": upload_errors or {},
        },
        status=status,
        session=c.session,
    )


async def clusters_page(request: Request) -> Response:
    c = await caller(request)
    form = {"key": secrets.token_urlsafe(16), "distro": request.query_params.get("distro", "")}
    svc = portal_of(request).svc
    return await list_page(request, c, svc, request.path_params["project"], form, {})


async def clusters_post(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    raw = await request.form()
    check_csrf(request, c.session, raw)
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    key = form.get("key", "")
    if not 8 <= len(key) <= 64:
        key = form["key"] = secrets.token_urlsafe(16)
    errors: forms.FormErrors = {}
    try:
        body = ClusterCreate.model_validate(
            {"name": form.get("name", ""), "distro": form.get("distro") or None}
        )
        task = await work(data.create_cluster, svc, c.principal, project, body, key)
        return redirect(f"/portal/clusters/{quote(task['entity']['id'])}")
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            msg = str(err["msg"]).removeprefix("Value error, ")
            errors.setdefault(field if field in _FIELDS else "", []).append(msg)
    except ValidationFailed as exc:
        errors = forms.errors_of(exc.errors, _FIELDS)
    except Conflict as exc:
        errors = {"": [exc.detail]}
    return await list_page(request, c, svc, project, form, errors, 422)


def status_html(cluster: dict[str, Any]) -> str:
    return render("_cluster_status.html", {"cluster": cluster, "base": "/portal"})


async def detail_page(
    request: Request,
    c: Caller,
    cluster_id: str,
    form: dict[str, str] | None = None,
    errors: forms.FormErrors | None = None,
    status: int = 200,
) -> Response:
    """A cluster's page; with the resize form's values and errors after a refused resize."""
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        view = data.cluster(svc, c.principal, cluster_id)
        return _projects(svc, c.principal), view

    projects, view = await work(go)
    errors = errors or {}
    return page(
        request,
        "cluster.html",
        {
            **layout(c, projects, view["project"], "clusters"),
            "title": f"cluster {view['name']}",
            "cluster": view,
            "form": form or {},
            "errors": errors,
            "general": errors.get("", []),
        },
        status=status,
        session=c.session,
    )


async def cluster_detail(request: Request) -> Response:
    c = await caller(request)
    return await detail_page(request, c, request.path_params["cluster_id"])


async def cluster_events(request: Request) -> Response:
    """The status block (state, task progress, every node) whenever it changes."""
    c = await caller(request)
    svc = portal_of(request).svc
    cluster_id = request.path_params["cluster_id"]
    first = await work(data.cluster, svc, c.principal, cluster_id)
    topic = f"cluster:{cluster_id}"
    alive = Alive(request, c.session.id)

    async def stream() -> AsyncIterator[str]:
        view = first
        last = ""
        yield "retry: 2000\n\n"
        while True:
            body = status_html(view)
            if body != last:
                yield sse("status", body)
                last = body
            seen = svc.notifier.version(topic)
            await svc.notifier.wait(topic, seen, _POLL_S)
            if await request.is_disconnected() or not await alive():
                return
            try:
                view = await work(data.cluster, svc, c.principal, cluster_id)
            except CellplaneError:
                yield sse("gone", json.dumps({"id": cluster_id}))
                return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
