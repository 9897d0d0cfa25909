"""Sign-in and sign-out: the portal as an OAuth client (authorization code + PKCE) of the tenant's
issuer. The tenant comes from the login page or the URL (`/portal/login?tenant=acme`)."""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cellplane.portal.oauth import TokenError, pkce_pair
from cellplane.portal.session import PendingLogin
from cellplane.portal.web import (
    check_csrf,
    clear_cookie,
    page,
    portal_of,
    read_session,
    redirect,
    set_cookie,
    work,
)

__all__ = ["callback", "login", "login_post", "logout", "signed_out"]

_TENANT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _next(value: str | None) -> str:
    """Only a path of the portal (never another site) to go back to after sign-in."""
    if value and value.startswith("/portal") and not value.startswith("//") and "\\" not in value:
        return value
    return "/portal/"


async def _login_page(
    request: Request, tenant: str, next_path: str, error: str | None, status: int = 200
) -> Response:
    portal = portal_of(request)
    s = await read_session(request)
    if s is None:
        s = await work(portal.store.new)
    resp = page(
        request,
        "login.html",
        {
            "title": "Sign in",
            "tenant_value": tenant,
            "next": next_path,
            "error": error,
            "project": None,
            "projects": [],
            "nav": "",
        },
        status=status,
        session=s,
    )
    set_cookie(request, resp, s)
    return resp


async def login(request: Request) -> Response:
    """The login page; with `?tenant=` (the tenant chosen by URL) straight to its issuer."""
    tenant = request.query_params.get("tenant", "")
    next_path = _next(request.query_params.get("next"))
    if tenant and _TENANT.match(tenant):
        return await _start(request, tenant, next_path)
    return await _login_page(request, tenant, next_path, "no such tenant name" if tenant else None)


async def login_post(request: Request) -> Response:
    form = await request.form()
    s = await read_session(request)
    tenant = str(form.get("tenant", "")).strip()
    next_path = _next(str(form.get("next", "")))
    if s is None or not s.csrf_ok(str(form.get("csrf", ""))):
        msg = "The form expired; please try again."
        return await _login_page(request, tenant, next_path, msg, 400)
    if not _TENANT.match(tenant):
        msg = "A tenant name is lowercase letters, digits and dashes."
        return await _login_page(request, tenant, next_path, msg, 422)
    return await _start(request, tenant, next_path)


async def _start(request: Request, tenant: str, next_path: str) -> Response:
    portal = portal_of(request)
    s = await work(portal.store.new)  # a fresh pre-sign-in session for every attempt
    verifier, challenge = pkce_pair()
    s.pending = PendingLogin(
        tenant=tenant,
        state=secrets.token_urlsafe(24),
        verifier=verifier,
        nonce=secrets.token_urlsafe(24),
        next_path=next_path,
    )
    await work(portal.store.save, s)
    url = portal.issuer(request).authorize_url(tenant, s.pending.state, challenge, s.pending.nonce)
    resp = redirect(url)
    set_cookie(request, resp, s)
    return resp


def _claims(id_token: str) -> dict[str, Any]:
    """The ID token's payload. It came straight from the issuer's token endpoint (no browser in
    between), which OIDC Core 3.1.3.7 accepts in place of checking its signature."""
    try:
        part = id_token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


async def callback(request: Request) -> Response:
    """The issuer sends the browser back here with a code (or an error)."""
    portal = portal_of(request)
    s = await read_session(request)
    q = request.query_params
    pending = s.pending if s is not None else None
    if (
        s is None
        or pending is None
        or not secrets.compare_digest(q.get("state", ""), pending.state)
    ):
        return await _login_page(
            request, "", "/portal/", "That sign-in expired; please sign in again.", 400
        )
    s.pending = None  # used once, whatever comes of it
    await work(portal.store.save, s)
    if "error" in q:
        msg = (
            "Sign-in was cancelled."
            if q["error"] == "access_denied"
            else q.get("error_description", q["error"])
        )
        return await _login_page(request, pending.tenant, pending.next_path, msg, 400)
    try:
        tokens = await portal.issuer(request).redeem(
            pending.tenant, q.get("code", ""), pending.verifier
        )
    except TokenError as exc:
        return await _login_page(
            request, pending.tenant, pending.next_path, f"Sign-in failed: {exc}", 400
        )
    claims = _claims(tokens.id_token)
    if claims.get("nonce") != pending.nonce:
        return await _login_page(
            request, pending.tenant, pending.next_path, "Sign-in failed: bad nonce.", 400
        )
    s.tenant = pending.tenant
    s.user = str(claims.get("preferred_username") or claims.get("name") or claims.get("sub", ""))
    s.access_token, s.refresh_token = tokens.access_token, tokens.refresh_token
    s.id_token, s.expires_at = tokens.id_token, tokens.expires_at
    s = await work(portal.store.rotate, s)  # a new id, with the tokens, in one write
    resp = redirect(pending.next_path)
    set_cookie(request, resp, s)
    return resp


async def logout(request: Request) -> Response:
    """End the portal session, then the issuer's (its end-session endpoint revokes the portal's
    refresh tokens) and come back to the signed-out page."""
    portal = portal_of(request)
    s = await read_session(request)
    form = await request.form()
    if s is None:
        resp = redirect("/portal/signed-out")
        clear_cookie(request, resp)
        return resp
    check_csrf(request, s, form)
    await work(portal.store.drop, s.id)
    if s.signed_in and s.id_token:
        url = portal.issuer(request).end_session_url(
            s.tenant, s.id_token, secrets.token_urlsafe(16)
        )
    else:
        url = "/portal/signed-out"
    resp = redirect(url)
    clear_cookie(request, resp)
    return resp


async def signed_out(request: Request) -> Response:
    return page(
        request,
        "message.html",
        {
            "title": "Signed out",
            "message": "You are signed out.",
            "project": None,
            "projects": [],
            "nav": "",
        },
    )
