"""Volumes of a project: the list (size, state, host, the cells using each), create and delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, ValidationFailed
from cellplane.portal import data, forms
from cellplane.portal.pages import _projects, layout
from cellplane.portal.web import Caller, caller, check_csrf, page, portal_of, redirect, work
from cellplane.services.context import Services
from cellplane.services.schemas import VolumeCreate

__all__ = ["volume_delete", "volumes_page", "volumes_post"]

_FIELDS = ("name", "size_gb")


async def _page(
    request: Request,
    c: Caller,
    svc: Services,
    project: str,
    form: dict[str, str],
    errors: forms.FormErrors,
    status: int = 200,
) -> Response:
    def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "volumes")
        return projects, data.volume_list(svc, c.principal, project)

    projects, items = await work(go)
    return page(
        request,
        "volumes.html",
        {
            **layout(c, projects, project, "volumes"),
            "title": f"{project}: volumes",
            "volumes": items,
            "form": form,
            "errors": errors,
            "general": errors.get("", []),
        },
        status=status,
        session=c.session,
    )


async def volumes_page(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    return await _page(request, c, svc, request.path_params["project"], {"size_gb": "1"}, {})


async def volumes_post(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    raw = await request.form()
    check_csrf(request, c.session, raw)
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    errors: forms.FormErrors = {}
    size = form.get("size_gb", "") or "1"
    if not size.isdigit():
        errors = {"size_gb": ["must be a whole number of GB"]}
    else:
        try:
            body = VolumeCreate.model_validate({"name": form.get("name", ""), "size_gb": int(size)})
            await work(data.create_volume, svc, c.principal, project, body)
            return redirect(f"/portal/projects/{quote(project)}/volumes")
        except ValidationError as exc:
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else ""
                msg = str(err["msg"]).removeprefix("Value error, ")
                errors.setdefault(field if field in _FIELDS else "", []).append(msg)
        except ValidationFailed as exc:
            errors = forms.errors_of(exc.errors, _FIELDS)
        except Conflict as exc:  # a name taken, or the volumes quota
            errors = {"name" if "already exists" in exc.detail else "": [exc.detail]}
    return await _page(request, c, svc, project, form, errors, 422)


async def volume_delete(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    form = await request.form()
    check_csrf(request, c.session, form)
    volume_id = request.path_params["volume_id"]
    if form.get("confirm") != "yes":  # not from the confirmation page
        return redirect(f"/portal/volumes/{quote(volume_id)}/delete")
    view = await work(data.volume, svc, c.principal, volume_id)
    await work(data.delete_volume, svc, c.principal, volume_id)
    return redirect(f"/portal/projects/{quote(view['project'])}/volumes")
