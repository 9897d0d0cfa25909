"""The tenant's directory in the portal: users, groups (and their members), OAuth clients and
role assignments: list, create, assign and unassign (after the confirmation page). A generated
password or a client secret is shown once, in the answer to the form, and never kept here."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, NotFound, ValidationFailed
from cellplane.identity.directory import AssignmentCreate, ClientCreate, GroupCreate, UserCreate
from cellplane.portal import admin_data, data, forms
from cellplane.portal.operator_web import (
    confirm_page,
    operator_page,
    read_form,
    refusal,
    validated,
)
from cellplane.portal.web import Caller, caller, portal_of, redirect, work

__all__ = [
    "ROLES",
    "assign_post",
    "client_post",
    "directory_page",
    "group_post",
    "member_post",
    "unassign_page",
    "unassign_post",
    "user_post",
]

#: The roles the assign form offers (system-admin only to a system admin).
ROLES = ("project-viewer", "project-member", "tenant-admin", "system-admin")
_REFUSED = (ValidationFailed, Conflict, NotFound)


async def _page(
    request: Request,
    c: Caller,
    failed: str = "",
    form: dict[str, str] | None = None,
    errors: forms.FormErrors | None = None,
    shown_once: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    """The directory page; after a refused form, that form (`failed`) with its errors at its
    fields; after a create that generated a secret, the secret (`shown_once`)."""
    svc = portal_of(request).svc
    errors = errors or {}

    def read() -> dict[str, Any]:
        if not (c.principal.can("users:read") or c.principal.can("roles:read")):
            data.needs(c.principal, "users:read")
        lists = admin_data.directory_lists(svc, c.principal)
        roles = [r for r in ROLES if r != "system-admin" or c.principal.is_system_admin]
        return {
            **lists,
            "roles_offered": roles,
            "failed": failed,
            "form": form or {},
            "errors": errors,
            "general": errors.get("", []),
            "shown_once": shown_once,
        }

    return await operator_page(request, c, "directory.html", "directory", "Directory", read, status)


async def directory_page(request: Request) -> Response:
    return await _page(request, await caller(request))


async def user_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    body = {"name": form.get("name", ""), "email": form.get("email") or None}
    try:
        user = validated(UserCreate, body)
        out = await work(admin_data.create_user, portal_of(request).svc, c.principal, user)
    except _REFUSED as exc:
        return await _page(request, c, "user", form, refusal(exc, ("name", "email")), status=422)
    shown = {"what": f"user {out['name']}", "label": "Password", "secret": out.get("password")}
    return await _page(request, c, shown_once=shown, status=201)


async def group_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    try:
        group = validated(GroupCreate, {"name": form.get("name", "")})
        await work(admin_data.create_group, portal_of(request).svc, c.principal, group)
    except _REFUSED as exc:
        return await _page(request, c, "group", form, refusal(exc, ("name",)), status=422)
    return redirect("/portal/directory")


async def member_post(request: Request) -> Response:
    """Add a user to the group (`op=add`) or take one out (`op=remove`)."""
    c = await caller(request)
    form = await read_form(request, c)
    group = request.path_params["group"]
    op = form.get("op", "")
    try:
        if op not in ("add", "remove"):
            raise ValidationFailed.field("op", "must be add or remove")
        if not form.get("user"):
            raise ValidationFailed.field("user", "name a user")
        args = (portal_of(request).svc, c.principal, group, form["user"], op == "add")
        await work(admin_data.member, *args)
    except _REFUSED as exc:
        errs = refusal(exc, ("user",))
        return await _page(request, c, f"member:{group}", form, errs, status=422)
    return redirect("/portal/directory")


async def client_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    public = form.get("public") == "true"
    uris = [u for u in form.get("redirect_uris", "").split() if u]
    body: dict[str, Any] = {
        "name": form.get("name", ""),
        "public": public,
        "redirect_uris": uris,
        "grant_types": ["authorization_code", "refresh_token"]
        if public
        else ["client_credentials"],
    }
    known = ("name", "redirect_uris", "grant_types")
    try:
        client = validated(ClientCreate, body)
        out = await work(admin_data.create_client, portal_of(request).svc, c.principal, client)
    except _REFUSED as exc:
        return await _page(request, c, "client", form, refusal(exc, known), status=422)
    shown = {
        "what": f"client {out['name']} ({out['client_id']})",
        "label": "Client secret",
        "secret": out.get("client_secret"),
    }
    return await _page(request, c, shown_once=shown, status=201)


async def assign_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    kind = form.get("kind", "user")
    if kind not in ("user", "group", "client"):
        kind = "user"
    body = {"role": form.get("role", ""), kind: form.get("subject") or None}
    body["project"] = form.get("project") or None
    try:
        assignment = validated(AssignmentCreate, body)
        await work(admin_data.assign, portal_of(request).svc, c.principal, assignment)
    except _REFUSED as exc:
        errs = refusal(exc, ("role", "user", "group", "client", "project"))
        for k in ("user", "group", "client"):  # the subject's error, at the subject field
            if k in errs:
                errs.setdefault("subject", []).extend(errs.pop(k))
        return await _page(request, c, "assign", form, errs, status=422)
    return redirect("/portal/directory")


async def unassign_page(request: Request) -> Response:
    c = await caller(request)
    data.needs(c.principal, "roles:write")
    svc = portal_of(request).svc
    rid = request.path_params["assignment_id"]
    lists = await work(admin_data.directory_lists, svc, c.principal)
    found = [a for a in lists["assignments"] or [] if a["id"] == rid]
    if not found:
        raise NotFound(f"role assignment {rid!r} does not exist")
    a = found[0]
    who = f"{a['subject']['kind']} {a['subject']['name'] or a['subject']['id']}"
    where = f" in project {a['project']}" if a["project"] else f" ({a['scope']})"
    return await confirm_page(
        request,
        c,
        nav="directory",
        verb="Unassign",
        kind="role",
        name=f"{a['role']} of {who}{where}",
        action=f"/portal/directory/roles/{quote(rid)}/delete",
        back="/portal/directory",
        note="The role's permissions end at the subject's next token.",
    )


async def unassign_post(request: Request) -> Response:
    c = await caller(request)
    form = await read_form(request, c)
    rid = request.path_params["assignment_id"]
    if form.get("confirm") != "yes":
        return redirect(f"/portal/directory/roles/{quote(rid)}/delete")
    await work(admin_data.unassign, portal_of(request).svc, c.principal, rid)
    return redirect("/portal/directory")
