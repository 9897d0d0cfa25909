"""The authorization endpoint: the login form of a valid authorization request (returned as data, a
`Page`, rendered by the api layer from a Jinja2 template), its CSRF binding, and the redirect with
the code.

Called by `GET/POST /identity/{tenant}/authorize` (`api/routes_identity.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import (
    InsecureTransportError,
    OAuth2Error,
    OAuth2Request,
)

from cellplane.identity.oidc.adapters import TenantServer
from cellplane.identity.oidc.answers import Cookie, Page, Reply, message
from cellplane.identity.oidc.login import LoginMixin
from cellplane.identity.oidc.records import (
    Client,
    Ctx,
    SlowDown,
)
from cellplane.identity.oidc.settings import (
    _CSRF_COOKIE,
    _FORM_KEY_SETTING,
    AUTHZ_PARAMS,
    LOGIN_FAILED,
)
from cellplane.state.models import Setting


class AuthorizeMixin(LoginMixin):
    """The login page of `OidcProvider`."""

    # -- the login page ------------------------------------------------------------------------

    def authorize(
        self,
        ctx: Ctx,
        method: str,
        path: str,
        headers: Mapping[str, str],
        pairs: list[tuple[str, str]],
        cookie: str | None,
    ) -> Reply:
        """GET shows the login form for a valid authorization request; POST checks it."""

        def go(server: TenantServer) -> Reply:
            if method == "GET":
                params = pairs
                login: dict[str, str] = {}
            else:
                params = [(k, v) for k, v in pairs if k in AUTHZ_PARAMS]
                login = {k: v for k, v in pairs if k not in AUTHZ_PARAMS}
            try:
                req = self.request(ctx, "GET", path, headers, params)
            except InsecureTransportError as exc:
                return message("Sign-in refused", exc.description, 400)
            if any(len(v) > self.settings.max_field_chars for _, v in pairs):
                return message("Sign-in refused", "The request is too large.", 400)
            try:
                grant = server.get_consent_grant(req)
            except OAuth2Error as exc:
                return self._authorize_error(server, req, exc)
            if method == "GET":
                return self._login_form(ctx, grant, params, None, 200)
            if not self._csrf_ok(ctx, params, cookie, login.get("csrf", "")):
                msg = (
                    "The sign-in form expired or did not come from this page. Please sign in again."
                )
                return self._login_form(ctx, grant, params, msg, 400)
            if "cancel" in login:
                return server.create_authorization_response(req, grant_user=None, grant=grant)  # type: ignore[no-any-return]
            try:
                user = self.check_password(
                    ctx, login.get("username", ""), login.get("password", "")
                )
            except SlowDown as slow:
                msg = "Too many failed sign-ins from your address. Please try again later."
                page = self._login_form(ctx, grant, params, msg, 429)
                page.headers["Retry-After"] = str(slow.retry_after)
                return page
            except OAuth2Error:
                return self._login_form(ctx, grant, params, LOGIN_FAILED, 400)
            return server.create_authorization_response(req, grant_user=user, grant=grant)  # type: ignore[no-any-return]

        return self._run(ctx, go)

    def _authorize_error(self, server: TenantServer, req: OAuth2Request, exc: OAuth2Error) -> Reply:
        if exc.redirect_uri:  # client and redirect URI are valid: tell the client (4.1.2.1)
            return server.handle_error_response(req, exc)  # type: ignore[no-any-return]
        description = exc.get_error_description() or ""
        return message("Sign-in refused", description, 400, error=exc.error)

    def _login_form(
        self,
        ctx: Ctx,
        grant: Any,
        params: list[tuple[str, str]],
        error: str | None,
        status: int,
    ) -> Page:
        nonce = secrets.token_urlsafe(24)
        issued = str(math.floor(ctx.now))
        csrf = f"{issued}.{self._csrf_mac(ctx, params, nonce, issued)}"
        client: Client = grant.request.client
        values = {
            "title": f"Sign in to {ctx.tenant}",
            "tenant": ctx.tenant,
            "client_name": client.name,
            "error": error,
            "action": ctx.issuer + "/authorize",
            "hidden": [(k, v) for k, v in params if k in AUTHZ_PARAMS],
            "csrf": csrf,
        }
        cookie = Cookie(
            _CSRF_COOKIE,
            nonce,
            max_age=int(self.settings.form_ttl_s),
            path=urlsplit(ctx.issuer).path + "/authorize",
            secure=ctx.secure,
        )
        return Page("login.html", status, values, cookie=cookie)

    def _key(self, ctx: Ctx) -> bytes:
        if self._form_key is None:
            with ctx.write() as s:
                row = s.get(Setting, _FORM_KEY_SETTING)
                if row is None:
                    row = Setting(key=_FORM_KEY_SETTING, value=secrets.token_hex(32))
                    s.add(row)
                value = row.value
            self._form_key = bytes.fromhex(value)
        return self._form_key

    def _csrf_mac(self, ctx: Ctx, params: list[tuple[str, str]], nonce: str, issued: str) -> str:
        canonical = urlencode(sorted((k, v) for k, v in params if k in AUTHZ_PARAMS))
        msg = "\n".join((ctx.tenant_id, issued, nonce, canonical)).encode()
        return hmac.new(self._key(ctx), msg, hashlib.sha256).hexdigest()

    def _csrf_ok(
        self, ctx: Ctx, params: list[tuple[str, str]], cookie: str | None, field_value: str
    ) -> bool:
        """The hidden field is an HMAC of the authorization request and the form's cookie
        (double submit): a form posted from another site lacks the SameSite cookie."""
        issued, _, mac = field_value.partition(".")
        if not cookie or not issued.isdigit() or len(cookie) > 128:
            return False
        if not 0 <= ctx.now - int(issued) <= self.settings.form_ttl_s:
            return False
        return hmac.compare_digest(mac, self._csrf_mac(ctx, params, cookie, issued))
