"""The operators' pages of tenants and projects: list, create, delete (tenants, after the
confirmation page; the API has no project delete). A new tenant's generated admin password is
shown once, in the answer to the form, and never stored by the portal."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, ValidationFailed
from cellplane.identity.directory import TenantCreate
from cellplane.portal import admin_data, data, forms
from cellplane.portal.operator_web import (
    confirm_page,
    operator_page,
    read_form,
    refusal,
    validated,
)
from cellplane.portal.web import caller, portal_of, redirect, work
from cellplane.services.schemas import ProjectCreate

__all__ = [
    "projects_page",
    "projects_post",
    "tenant_delete",
    "tenant_delete_page",
    "tenants_page",
    "tenants_post",
]

_TENANT_FIELDS = ("name", "admin")


async def _tenants(
    request: Request,
    c: Any,
    form: dict[str, str] | None = None,
    errors: forms.FormErrors | None = None,
    created: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    svc = portal_of(request).svc
    errors = errors or {}
    return await operator_page(
        request,
        c,
        "tenants.html",
        "tenants",
        "Tenants",
        lambda: {
            "tenants": admin_data.tenant_list(svc, c.principal),
            "form": form or {"admin": "admin"},
            "errors": errors,
            "general": errors.get("", []),
            "created": created,
        },
        status,
    )


async def tenants_page(request: Request) -> Response:
    return await _tenants(request, await caller(request))


async def tenants_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    svc = portal_of(request).svc
    try:
        body = validated(
            TenantCreate,
            {"name": form.get("name", ""), "admin": {"name": form.get("admin") or "admin"}},
        )
        created = await work(admin_data.create_tenant, svc, c.principal, body)
    except (ValidationFailed, Conflict) as exc:
        return await _tenants(request, c, form, refusal(exc, _TENANT_FIELDS), status=422)
    # Shown in this answer only (no-store): the admin's password is not kept anywhere here.
    return await _tenants(request, c, created=created, status=201)


async def tenant_delete_page(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    name = request.path_params["tenant"]
    t = await work(admin_data.tenant, svc, c.principal, name)
    data.needs(c.principal, "tenants:write")
    return await confirm_page(
        request,
        c,
        nav="tenants",
        verb="Delete",
        kind="tenant",
        name=t["name"],
        action=f"/portal/tenants/{quote(t['name'])}/delete",
        back="/portal/tenants",
        note="Its users, groups, clients and projects go away; it must have no cells left.",
    )


async def tenant_delete(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    name = request.path_params["tenant"]
    if form.get("confirm") != "yes":
        return redirect(f"/portal/tenants/{quote(name)}/delete")
    svc = portal_of(request).svc
    try:
        await work(admin_data.delete_tenant, svc, c.principal, name)
    except Conflict as exc:  # cells or volumes left: said on the tenants page
        return await _tenants(request, c, errors={"": [exc.detail]}, status=409)
    return redirect("/portal/tenants")


async def _projects_page(
    request: Request,
    c: Any,
    form: dict[str, str] | None = None,
    errors: forms.FormErrors | None = None,
    status: int = 200,
) -> Response:
    svc = portal_of(request).svc
    errors = errors or {}
    return await operator_page(
        request,
        c,
        "projects.html",
        "projects",
        "Projects",
        lambda: {
            "items": admin_data.project_list(svc, c.principal),
            "form": form or {},
            "errors": errors,
            "general": errors.get("", []),
        },
        status,
    )


async def projects_page(request: Request) -> Response:
    return await _projects_page(request, await caller(request))


async def projects_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    svc = portal_of(request).svc
    try:
        body = validated(ProjectCreate, {"name": form.get("name", "")})
        await work(admin_data.create_project, svc, c.principal, body)
    except (ValidationFailed, Conflict) as exc:
        return await _projects_page(request, c, form, refusal(exc, ("name",)), 422)
    return redirect("/portal/projects")
