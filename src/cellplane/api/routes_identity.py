"""The OpenID Connect provider's HTTP endpoints: one issuer per tenant at /identity/{tenant}.

Thin glue around `cellplane.identity.oidc`: each route reads what it needs from the request in
the event loop (the form body, the client address, a cookie), then runs the provider (authlib
and sync SQLAlchemy) in a worker thread. The provider answers data; `api/pages.py` makes the
HTTP response (and renders the login page from `api/templates/`). None of these routes sits behind `require(...)`: they
are how callers obtain credentials in the first place, and each path is listed in
`PUBLIC_ROUTES` so the route-policy check can tell they are public on purpose. OAuth endpoints
answer OAuth error JSON (RFC 6749 section 5.2); an unknown tenant answers a 404 problem.

Every endpoint that checks a secret (a client's: /token, /revoke, /introspect; a password: /token,
the login form's POST) draws on one token bucket per (tenant, client address); discovery, JWKS,
userinfo and logout only verify signatures and are not limited.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cellplane.api import models
from cellplane.api.openapi import Html
from cellplane.api.pages import respond

if TYPE_CHECKING:
    from cellplane.identity.oidc import Ctx, OidcProvider

__all__ = ["PUBLIC_ROUTES", "provider_of", "router"]

router = APIRouter(tags=["identity"])
T = TypeVar("T")

_BASE = "/identity/{tenant}"
#: Paths deliberately reachable without a bearer credential (the route-policy test reads this).
PUBLIC_ROUTES: set[str] = {
    f"{_BASE}/.well-known/openid-configuration",
    f"{_BASE}/jwks",
    f"{_BASE}/token",
    f"{_BASE}/authorize",
    f"{_BASE}/userinfo",
    f"{_BASE}/revoke",
    f"{_BASE}/introspect",
    f"{_BASE}/logout",
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OAuth error answers (RFC 6749 5.2) of an endpoint, for the OpenAPI document."""
    what = {
        400: "invalid_request, invalid_grant, unsupported_grant_type, ...",
        401: "invalid_client or invalid_token",
        413: "The form is larger than the provider's limit.",
        429: "temporarily_unavailable: too many attempts from this address (Retry-After).",
    }
    return {s: {"model": models.OAuthError, "description": what[s]} for s in statuses}


def _oauth_json(status: int, description: str = "") -> dict[str, Any]:
    """An OAuth error answer of a route whose own media type is not JSON (the login form's)."""
    schema = {"$ref": "#/components/schemas/OAuthError"}
    what = description or _oauth_errors(status)[status]["description"]
    return {"description": what, "content": {"application/json": {"schema": schema}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"


_REDIRECT: dict[str, Any] = {
    "description": "A redirect to the client's redirect_uri (with a code, or an error).",
    "headers": {"Location": {"schema": {"type": "string"}}},
}


def provider_of(app: FastAPI) -> OidcProvider:
    """The app's provider, made on first use (tests reach it to move its clock)."""
    provider: OidcProvider | None = getattr(app.state, "oidc", None)
    if provider is None:
        # Imported on the first identity request: authlib stays out of a server nobody signs in to.
        from cellplane.identity.oidc import OidcProvider

        provider = OidcProvider(app.state.services, app.state.authenticator)
        app.state.oidc = provider
    return provider


def _source(request: Request) -> str:
    return request.client.host if request.client else ""


def _oauth_error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={**_NO_STORE, **headers},
    )


async def _form(request: Request, provider: OidcProvider) -> list[tuple[str, str]] | Response:
    """The urlencoded body's pairs, or an OAuth error answer for a body that is not one."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return _oauth_error(
            400, "invalid_request", "Send the parameters as application/x-www-form-urlencoded."
        )
    limit = provider.settings.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return _oauth_error(413, "invalid_request", "The request body is too large.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _oauth_error(413, "invalid_request", "The request body is too large.")
    try:
        return parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=64
        )
    except (UnicodeDecodeError, ValueError):
        return _oauth_error(400, "invalid_request", "The request body is not valid form data.")


def _limited(request: Request, provider: OidcProvider, tenant: str) -> Response | None:
    wait = provider.rate_limited(tenant, _source(request))
    if wait is None:
        return None
    retry = str(max(1, math.ceil(wait)))
    return _oauth_error(
        429, "temporarily_unavailable", "Too many requests; slow down.", **{"Retry-After": retry}
    )


async def _run(request: Request, tenant: str, fn: Callable[[Ctx], T]) -> T:
    """fn(ctx) in a worker thread: tenant lookup, authlib and the database all in one hop."""
    provider = provider_of(request.app)
    return await run_in_threadpool(
        provider.run, tenant, str(request.base_url), _source(request), fn
    )


def _path(request: Request) -> str:
    return request.url.path + ("?" + request.url.query if request.url.query else "")


@router.get(f"{_BASE}/.well-known/openid-configuration", response_model=models.OpenIdConfiguration)
async def discovery(tenant: str, request: Request) -> JSONResponse:
    doc = await _run(request, tenant, provider_of(request.app).discovery)
    return JSONResponse(doc, headers={"Cache-Control": "max-age=300"})


@router.get(f"{_BASE}/jwks", response_model=models.Jwks, response_class=JwkSetResponse)
async def jwks(tenant: str, request: Request) -> JSONResponse:
    keys = await _run(request, tenant, provider_of(request.app).jwks)
    return JSONResponse(
        keys, media_type="application/jwk-set+json", headers={"Cache-Control": "max-age=60"}
    )


async def _endpoint(request: Request, tenant: str, name: str, *, limit: bool) -> Response:
    provider = provider_of(request.app)
    if limit and (refused := _limited(request, provider, tenant)) is not None:
        return refused
    if request.method == "GET":
        pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=64)
    else:
        form = await _form(request, provider)
        if isinstance(form, Response):
            return form
        pairs = form
    method, path, headers = request.method, _path(request), request.headers
    reply = await _run(
        request, tenant, lambda ctx: provider.endpoint(ctx, name, method, path, headers, pairs)
    )
    return respond(reply)


@router.post(
    f"{_BASE}/token",
    response_model=models.TokenAnswer,
    responses=_oauth_errors(400, 401, 413, 429),
)
async def token(tenant: str, request: Request) -> Response:
    return await _endpoint(request, tenant, "token", limit=True)


@router.post(
    f"{_BASE}/revoke",
    response_model=models.Empty,
    responses=_oauth_errors(400, 401, 413, 429),
)
async def revoke(tenant: str, request: Request) -> Response:
    return await _endpoint(request, tenant, "revocation", limit=True)


@router.post(
    f"{_BASE}/introspect",
    response_model=models.Introspection,
    responses=_oauth_errors(400, 401, 413, 429),
)
async def introspect(tenant: str, request: Request) -> Response:
    # Limited like /token and /revoke: it authenticates a client by its secret.
    return await _endpoint(request, tenant, "introspection", limit=True)


@router.get(f"{_BASE}/userinfo", response_model=models.UserInfo, responses=_oauth_errors(400, 401))
async def userinfo(tenant: str, request: Request) -> Response:
    return await _endpoint(request, tenant, "userinfo", limit=False)


@router.post(
    f"{_BASE}/userinfo", response_model=models.UserInfo, responses=_oauth_errors(400, 401, 413)
)
async def userinfo_post(tenant: str, request: Request) -> Response:
    if not request.headers.get("content-type"):  # a bare POST with only the bearer header
        provider, path, headers = provider_of(request.app), _path(request), request.headers
        reply = await _run(
            request,
            tenant,
            lambda ctx: provider.endpoint(ctx, "userinfo", "POST", path, headers, []),
        )
        return respond(reply)
    return await _endpoint(request, tenant, "userinfo", limit=False)


@router.get(
    f"{_BASE}/logout",
    response_class=Html,
    responses={302: {**_REDIRECT, "description": "To the post_logout_redirect_uri."}},
)
async def logout(tenant: str, request: Request) -> Response:
    return await _endpoint(request, tenant, "end_session", limit=False)


@router.get(
    f"{_BASE}/authorize",
    response_class=Html,
    responses={302: _REDIRECT, 400: _html("The request is not valid (no redirect is safe).")},
)
async def authorize(tenant: str, request: Request) -> Response:
    """The login form of a valid authorization request (errors per RFC 6749 4.1.2.1)."""
    pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=64)
    return await _authorize(request, tenant, pairs)


@router.post(
    f"{_BASE}/authorize",
    response_class=Html,
    responses={
        302: _REDIRECT,
        # The form again (HTML), or an OAuth error for a body that is not a form (JSON).
        400: {
            "description": "The request is not valid (no redirect is safe), or its body is not "
            "application/x-www-form-urlencoded.",
            "content": {
                **_html("")["content"],
                **_oauth_json(400)["content"],
            },
        },
        413: _oauth_json(413),
        429: _oauth_json(429),
    },
)
async def authorize_post(tenant: str, request: Request) -> Response:
    """The login form, submitted: a redirect with a code, or the form again."""
    provider = provider_of(request.app)
    if (refused := _limited(request, provider, tenant)) is not None:
        return refused
    form = await _form(request, provider)
    if isinstance(form, Response):
        return form
    return await _authorize(request, tenant, form)


async def _authorize(request: Request, tenant: str, pairs: list[tuple[str, str]]) -> Response:
    provider = provider_of(request.app)
    method, path, headers = request.method, request.url.path, request.headers
    cookie = request.cookies.get("cp_authz")
    reply = await _run(
        request,
        tenant,
        lambda ctx: provider.authorize(ctx, method, path, headers, pairs, cookie),
    )
    return respond(reply)
