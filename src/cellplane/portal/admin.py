"""The operators' pages of tenants and projects: list, create, delete (after the confirmation
page: `operator_web.Confirmed`; a tenant or project that still holds cells and the like is
refused, naming them). A new tenant's generated admin password is shown once, in the answer to
the form, and never stored by the portal."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, NotFound, ValidationFailed
from cellplane.identity.directory import TenantCreate
from cellplane.portal import admin_data, forms
from cellplane.portal.operator_web import (
    Confirmed,
    operator_page,
    read_form,
    refusal,
    validated,
)
from cellplane.portal.web import caller, portal_of, redirect, work
from cellplane.services.schemas import ProjectCreate

__all__ = [
    "PROJECT_DELETE",
    "TENANT_DELETE",
    "projects_page",
    "projects_post",
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


TENANT_DELETE = Confirmed(
    path="/tenants/{tenant}/delete",
    nav="tenants",
    verb="Delete",
    kind="tenant",
    permission="tenants:write",
    note="Its users, groups, clients and projects go away; it must have no cells left.",
    back="/portal/tenants",
    name=lambda svc, p, a: str(admin_data.tenant(svc, p, a["tenant"])["name"]),
    run=lambda svc, p, a: admin_data.delete_tenant(svc, p, a["tenant"]),
)


def _project_name(svc: Any, p: Any, a: dict[str, str]) -> str:
    for item in admin_data.project_list(svc, p):
        if a["project"] in (item["name"], item["id"]):
            return str(item["name"])
    raise NotFound(f"project {a['project']!r} does not exist")


PROJECT_DELETE = Confirmed(
    path="/projects/{project}/delete",
    nav="projects",
    verb="Delete",
    kind="project",
    permission="projects:write",
    note="Its quota, role assignments and default network go with it; it must be empty.",
    back="/portal/projects",
    name=_project_name,
    run=lambda svc, p, a: admin_data.delete_project(svc, p, a["project"]),
)


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
