"""The operator's pages: hosts (capacity and usage bars, state, zone, the maintenance toggle) and
a project's quota (limits and usage, set by whoever holds `quotas:write`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, ValidationFailed
from cellplane.portal import data, forms
from cellplane.portal.pages import _projects, layout
from cellplane.portal.web import caller, check_csrf, page, portal_of, redirect, work

__all__ = ["hosts_page", "maintenance_post", "quota_page", "quota_post"]


def _pct(used: float, total: float | None) -> int | None:
    if not total:
        return None
    return max(0, min(100, round(100 * used / total)))


def host_bars(h: dict[str, Any]) -> list[dict[str, Any]]:
    cap, use = h["capacity"], h["usage"]
    out = []
    for key, label, unit in (
        ("cpu", "CPU", "cores"),
        ("memory_mb", "Memory", "MB"),
        ("disk_gb", "Disk", "GB"),
    ):
        used = use.get(key, 0) or 0
        total = cap.get(key)
        out.append(
            {
                "key": key,
                "label": label,
                "unit": unit,
                "used": used,
                "limit": total,
                "pct": _pct(used, total),
            }
        )
    return out


async def hosts_page(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return _projects(svc, c.principal), data.host_list(svc, c.principal)

    projects, hosts = await work(go)
    project = request.query_params.get("project") or (projects[0]["name"] if projects else None)
    if project not in {p["name"] for p in projects}:
        project = None
    for h in hosts:
        h["bars"] = host_bars(h)
    return page(
        request,
        "hosts.html",
        {**layout(c, projects, project, "hosts"), "title": "Hosts", "hosts": hosts},
        session=c.session,
    )


async def maintenance_post(request: Request) -> Response:
    c = await caller(request)
    svc = portal_of(request).svc
    form = await request.form()
    check_csrf(request, c.session, form)
    enabled = form.get("enabled") == "true"
    await work(data.set_maintenance, svc, c.principal, request.path_params["host_id"], enabled)
    return redirect("/portal/hosts")


def _quota_values(
    c: Any, projects: list[dict[str, Any]], project: str, q: dict[str, Any]
) -> dict[str, Any]:
    return {
        **layout(c, projects, project, "quota"),
        "title": f"{project}: quota",
        "bars": q["bars"],
        "limits": q["view"]["limits"],
    }


async def quota_page(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        projects = _projects(svc, c.principal)
        layout(c, projects, project, "quota")
        return projects, data.quota(svc, c.principal, project)

    projects, q = await work(go)
    values = _quota_values(c, projects, project, q)
    form = {k: "" if v is None else str(v) for k, v in q["view"]["limits"].items()}
    return page(
        request,
        "quota.html",
        {
            **values,
            "form": form,
            "errors": {},
            "general": [],
            "saved": "saved" in request.query_params,
        },
        session=c.session,
    )


async def quota_post(request: Request) -> Response:
    c = await caller(request)
    project = request.path_params["project"]
    svc = portal_of(request).svc
    raw = await request.form()
    check_csrf(request, c.session, raw)
    form = {k: str(v).strip() for k, v in raw.items() if isinstance(v, str)}
    limits, errors = forms.quota_body(form)
    general: list[str] = []
    if limits is not None:
        try:
            await work(data.set_quota, svc, c.principal, project, limits)
            return redirect(f"/portal/projects/{quote(project)}/quota?saved=1")
        except ValidationFailed as exc:
            errors = forms.errors_of(exc.errors, forms.QUOTA_FIELDS)
        except Conflict as exc:
            general = [exc.detail]

    def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return _projects(svc, c.principal), data.quota(svc, c.principal, project)

    projects, q = await work(go)
    return page(
        request,
        "quota.html",
        {
            **_quota_values(c, projects, project, q),
            "form": form,
            "errors": errors,
            "general": general + errors.get("", []),
            "saved": False,
        },
        status=422 if errors else 409,
        session=c.session,
    )
