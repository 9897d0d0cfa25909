"""The tenant's directory in the portal: users, groups (and their members), OAuth clients and
role assignments: list, create, assign; disable, enable and delete users, delete groups and
clients, unassign roles (each after its confirmation page: `operator_web.Confirmed`). A generated
password or a client secret is shown once, in the answer to the form, and never kept here."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cellplane.errors import Conflict, NotFound, ValidationFailed
from cellplane.identity import directory
from cellplane.identity.directory import AssignmentCreate, ClientCreate, GroupCreate, UserCreate
from cellplane.portal import admin_data, data, forms
from cellplane.portal.operator_web import (
    Confirmed,
    Params,
    operator_page,
    read_form,
    refusal,
    validated,
)
from cellplane.portal.web import Caller, caller, portal_of, redirect, work
from cellplane.services.context import Principal, Services

__all__ = [
    "CLIENT_DELETE",
    "GROUP_DELETE",
    "ROLES",
    "UNASSIGN",
    "USER_DELETE",
    "USER_DISABLE",
    "USER_ENABLE",
    "assign_post",
    "client_post",
    "directory_page",
    "group_post",
    "member_post",
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
            "me": c.principal.subject,
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


def _assignment_name(svc: Services, p: Principal, params: Params) -> str:
    rid = params["assignment_id"]
    found = [a for a in directory.list_assignments(svc, p)["items"] if a["id"] == rid]
    if not found:
        raise NotFound(f"role assignment {rid!r} does not exist")
    a = found[0]
    who = f"{a['subject']['kind']} {a['subject']['name'] or a['subject']['id']}"
    where = f" in project {a['project']}" if a["project"] else f" ({a['scope']})"
    return f"{a['role']} of {who}{where}"


def _user_name(svc: Services, p: Principal, params: Params) -> str:
    return str(directory.get_user(svc, p, params["user"])["name"])


def _user_action(verb: str, note: str, run: Any, final: bool = False) -> Confirmed:
    return Confirmed(
        path=f"/directory/users/{{user}}/{verb.lower()}",
        nav="directory",
        verb=verb,
        kind="user",
        permission="users:write",
        note=note,
        back="/portal/directory",
        name=_user_name,
        run=run,
        final=final,
    )


USER_DISABLE = _user_action(
    "Disable",
    "They cannot sign in, and their tokens and sessions stop working now; Enable undoes it.",
    lambda svc, p, a: admin_data.set_user_disabled(svc, p, a["user"], True),
)
USER_ENABLE = _user_action(
    "Enable",
    "They can sign in again.",
    lambda svc, p, a: admin_data.set_user_disabled(svc, p, a["user"], False),
)
USER_DELETE = _user_action(
    "Delete",
    "Their group memberships, roles, sessions and personal credentials go with them.",
    lambda svc, p, a: admin_data.delete_user(svc, p, a["user"]),
    final=True,
)
GROUP_DELETE = Confirmed(
    path="/directory/groups/{group}/delete",
    nav="directory",
    verb="Delete",
    kind="group",
    permission="groups:write",
    note="Its members stay; the roles given to the group go with it.",
    back="/portal/directory",
    name=lambda svc, p, a: str(directory.get_group(svc, p, a["group"])["name"]),
    run=lambda svc, p, a: admin_data.delete_group(svc, p, a["group"]),
)
CLIENT_DELETE = Confirmed(
    path="/directory/clients/{client}/delete",
    nav="directory",
    verb="Delete",
    kind="client",
    permission="clients:write",
    note="Its roles go with it and its tokens stop working now.",
    back="/portal/directory",
    name=lambda svc, p, a: "{name} ({client_id})".format(
        **directory.get_client(svc, p, a["client"])
    ),
    run=lambda svc, p, a: admin_data.delete_client(svc, p, a["client"]),
)
UNASSIGN = Confirmed(
    path="/directory/roles/{assignment_id}/delete",
    nav="directory",
    verb="Unassign",
    kind="role",
    permission="roles:write",
    note="The role's permissions end at the subject's next token.",
    back="/portal/directory",
    name=_assignment_name,
    run=lambda svc, p, a: admin_data.unassign(svc, p, a["assignment_id"]),
)
