"""What every portal route shares: the portal's state, rendering, the session cookie, the
signed-in caller (refreshing the access token when it is about to expire) and the CSRF check."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cellplane.errors import CellplaneError, Forbidden, Unauthorized
from cellplane.identity.authn import Authenticator
from cellplane.portal.oauth import IssuerClient, TokenError
from cellplane.portal.session import PortalSession, SessionStore
from cellplane.services.context import Principal, Services
from cellplane.services.portal_sessions import PortalSessions

__all__ = [
    "COOKIE",
    "Caller",
    "Portal",
    "caller",
    "check_csrf",
    "page",
    "portal_of",
    "redirect",
    "render",
]

log = logging.getLogger("cellplane.portal")
T = TypeVar("T")
COOKIE = "cp_portal"
_UNREAD = object()
#: Refresh the access token when it has less than this left.
_REFRESH_MARGIN_S = 30.0

#: Every page: not cached, not framed, scripts and styles from the portal only, no referrer
#: to other sites.
HEADERS: dict[str, str] = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self' "
    "{issuer}; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send `Origin: null`
    "X-Content-Type-Options": "nosniff",
}


@dataclass
class Portal:
    """The portal's state: the server's services, its token verifier, the sessions, and the
    parent app (its issuer endpoints, its client to the agents)."""

    svc: Services
    authenticator: Authenticator
    parent: Any
    store: SessionStore = field(init=False)
    _issuers: dict[str, IssuerClient] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # In the server's database: shared by its replicas, kept over a restart.
        self.store = SessionStore(PortalSessions(self.svc.db, self.svc.sealer))

    def base(self, request: Request) -> str:
        return (self.svc.public_url or str(request.base_url)).rstrip("/")

    def issuer(self, request: Request) -> IssuerClient:
        base = self.base(request)
        client = self._issuers.get(base)
        if client is None:
            client = self._issuers[base] = IssuerClient(self.parent, base)
        return client

    def secure(self, request: Request) -> bool:
        """Secure cookies over https, and on loopback http (browsers treat it as secure)."""
        parts = urlsplit(self.base(request))
        return parts.scheme == "https" or parts.hostname in ("127.0.0.1", "localhost", "::1")

    async def aclose(self) -> None:
        for client in self._issuers.values():
            await client.aclose()


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def num(value: Any) -> str:
    """A number as people write it: 2, 0.25, 1536 (no trailing .0)."""
    if value is None:
        return ""
    f = float(value)
    return str(int(f)) if f.is_integer() else f"{f:.2f}".rstrip("0")


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cellplane.portal", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    return env


def render(template: str, values: dict[str, Any]) -> str:
    return str(_environment().get_template(template).render(values))


def page(
    request: Request,
    template: str,
    values: dict[str, Any],
    *,
    status: int = 200,
    session: PortalSession | None = None,
) -> HTMLResponse:
    portal = portal_of(request)
    base = portal.base(request)
    all_values = {
        "base": "/portal",
        "csrf": session.csrf if session else "",
        "signed_in": bool(session and session.signed_in),
        "user": session.user if session else "",
        "tenant": session.tenant if session else "",
        **values,
    }
    headers = dict(HEADERS)
    headers["Content-Security-Policy"] = headers["Content-Security-Policy"].format(issuer=base)
    return HTMLResponse(render(template, all_values), status_code=status, headers=headers)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def set_cookie(request: Request, resp: Response, session: PortalSession) -> None:
    resp.set_cookie(
        COOKIE,
        session.id,
        path="/portal",
        secure=portal_of(request).secure(request),
        httponly=True,
        samesite="lax",
    )


def clear_cookie(request: Request, resp: Response) -> None:
    resp.delete_cookie(
        COOKIE, path="/portal", secure=portal_of(request).secure(request), httponly=True
    )


def session_of(request: Request) -> PortalSession | None:
    """The request's session (read once per request, then kept on the request)."""
    s = getattr(request.state, "portal_session", _UNREAD)
    if s is _UNREAD:
        s = request.state.portal_session = portal_of(request).store.get(request.cookies.get(COOKIE))
    return s if isinstance(s, PortalSession) else None


async def read_session(request: Request) -> PortalSession | None:
    """`session_of`, its database read in the thread pool."""
    return await run_in_threadpool(session_of, request)


@dataclass
class Caller:
    session: PortalSession
    principal: Principal


class SignIn(Exception):
    """The request needs a signed-in session; the answer sends the browser to sign in."""


#: How many times a request waits for another replica's refresh of its session's tokens.
_REFRESH_WAITS = 40


async def _fresh_token(request: Request, s: PortalSession) -> None:
    """Refresh the access token when it is about to expire: once for concurrent requests of
    this process (a lock) and of every replica (a claim on the row; the others wait for its
    tokens), since the issuer ends the whole family of a refresh token presented twice."""
    portal = portal_of(request)
    store = portal.store
    if s.expires_at - store.now() > _REFRESH_MARGIN_S:
        return
    async with store.refresh_lock(s.id):
        for _ in range(_REFRESH_WAITS):
            stored = await run_in_threadpool(store.get, s.id)
            if stored is None:
                raise SignIn()
            s.access_token, s.refresh_token = stored.access_token, stored.refresh_token
            s.id_token, s.expires_at = stored.id_token, stored.expires_at
            if s.expires_at - store.now() > _REFRESH_MARGIN_S:
                return  # refreshed meanwhile, here or by another replica
            if await run_in_threadpool(store.claim_refresh, s):
                break
            await asyncio.sleep(0.25)  # another replica is refreshing it
        else:
            raise SignIn()
        try:
            tokens = await portal.issuer(request).refresh(s.tenant, s.refresh_token)
        except TokenError as exc:
            log.info("portal session of %s ended: refresh refused: %s", s.user, exc)
            await run_in_threadpool(store.drop, s.id)
            raise SignIn() from None
        s.access_token, s.refresh_token = tokens.access_token, tokens.refresh_token
        s.id_token = tokens.id_token or s.id_token
        s.expires_at = tokens.expires_at
        await run_in_threadpool(store.save, s)


async def caller(request: Request) -> Caller:
    """The signed-in session and its Principal (from the access token, as the API sees it)."""
    s = await read_session(request)
    if s is None or not s.signed_in:
        raise SignIn()
    await _fresh_token(request, s)
    portal = portal_of(request)
    base = portal.base(request)
    try:
        principal = await run_in_threadpool(portal.authenticator.authenticate, s.access_token, base)
    except Unauthorized:
        await run_in_threadpool(portal.store.drop, s.id)
        raise SignIn() from None
    request.state.principal = principal  # the server's audit of changes names the caller
    return Caller(s, principal)


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    if request.method != "GET" or not target.startswith("/portal"):
        target = "/portal/"
    return redirect("/portal/login?next=" + quote(target, safe=""))


def check_csrf(request: Request, s: PortalSession, form: Any) -> None:
    """A change needs the session's CSRF token, in the form (`csrf`) or the `X-CSRF-Token`
    header (htmx), and no foreign Origin."""
    origin = request.headers.get("origin")
    own = {portal_of(request).base(request), str(request.base_url).rstrip("/")}
    if origin and origin.rstrip("/") not in own:
        raise Forbidden("this form was sent from another site")
    presented = request.headers.get("x-csrf-token") or form.get("csrf")
    if not s.csrf_ok(presented):
        raise Forbidden("the form expired or did not come from this page; reload and retry")


async def work(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A service call (database work) in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


def error_page(request: Request, exc: CellplaneError, s: PortalSession | None) -> HTMLResponse:
    status = exc.status
    return page(
        request,
        "error.html",
        {
            "title": exc.title,
            "status": status,
            "message": exc.detail,
            "project": None,
            "projects": [],
            "nav": "",
        },
        status=status,
        session=s,
    )
