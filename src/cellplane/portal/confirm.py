"""The confirmation step before every Delete: a small page of its own (works without JS) that
names what goes away and posts the delete with ``confirm=yes``. The delete routes refuse a post
without it by sending the browser to this page, so no delete happens on a single click."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Forbidden
from cellplane.portal import data
from cellplane.portal.pages import _projects, layout
from cellplane.portal.web import caller, page, portal_of, redirect, work

__all__ = ["cell_delete_page", "cluster_delete_page", "confirmed", "volume_delete_page"]


def confirmed(form: FormData) -> bool:
    """Whether a delete's form came from its confirmation page."""
    return form.get("confirm") == "yes"


def ask(path: str) -> Response:
    """A delete posted without its confirmation: show the confirmation page instead."""
    return redirect(path)


async def _confirm_page(
    request: Request,
    *,
    kind: str,
    read: Any,
    action: str,
    back: str,
    hidden: dict[str, str],
    note: str = "",
    keep_volumes: bool = False,
) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        view = read(svc, c.principal)
        return _projects(svc, c.principal), view

    projects, view = await work(go)
    values = layout(c, projects, view["project"], kind + "s")
    permission = ("volumes" if kind == "volume" else "cells") + ":write"
    if not values["may"][permission]:  # a 403 page, as the delete itself would answer
        raise Forbidden(f"deleting a {kind} needs the {permission!r} permission in this project")
    return page(
        request,
        "confirm.html",
        {
            **values,
            "title": f"Delete {kind} {view['name']}?",
            "verb": "Delete",
            "kind": kind,
            "name": view["name"],
            "action": action.format(**view),
            "back": back.format(**view),
            "hidden": hidden,
            "note": note,
            "keep_volumes": keep_volumes,
        },
        session=c.session,
    )


async def cell_delete_page(request: Request) -> Response:
    cell_id = request.path_params["cell_id"]
    return await _confirm_page(
        request,
        kind="cell",
        read=lambda svc, p: data.cell(svc, p, cell_id),
        action="/portal/cells/{id}/action",
        back="/portal/cells/{id}",
        hidden={"action": "delete"},
        note="Its container and its data outside volumes go away; its volumes stay.",
    )


async def volume_delete_page(request: Request) -> Response:
    volume_id = request.path_params["volume_id"]
    return await _confirm_page(
        request,
        kind="volume",
        read=lambda svc, p: data.volume(svc, p, volume_id),
        action="/portal/volumes/{id}/delete",
        back="/portal/projects/{project}/volumes",
        hidden={},
        note="Everything stored on it goes away.",
    )


async def cluster_delete_page(request: Request) -> Response:
    cluster_id = request.path_params["cluster_id"]
    return await _confirm_page(
        request,
        kind="cluster",
        read=lambda svc, p: data.cluster(svc, p, cluster_id),
        action="/portal/clusters/{id}/delete",
        back="/portal/clusters/{id}",
        hidden={},
        note="Every node's cell goes away.",
        keep_volumes=True,
    )
