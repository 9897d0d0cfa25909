"""HTML pages and framework-free answers of the identity provider, made into HTTP responses.

The OIDC provider (`cellplane.identity.oidc`) returns data: an `Answer` (JSON or raw body, from
authlib) or a `Page` (a template under `api/templates/` and its values). `api/routes_identity.py`
calls `respond` on each. Templates are rendered by Jinja2 with autoescaping on; jinja2 is
imported on the first page, so a server nobody signs in to through a browser never loads it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from starlette.responses import HTMLResponse, JSONResponse, Response

if TYPE_CHECKING:
    import jinja2

    from cellplane.identity.oidc.answers import Page, Reply

__all__ = ["PAGE_HEADERS", "render", "respond"]

#: Every page: not cached, not framed, no scripts, no external assets, no referrer.
PAGE_HEADERS: dict[str, str] = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("cellplane.api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, values: dict[str, Any]) -> str:
    """The HTML of `template` (a file under api/templates/) with `values`."""
    return _environment().get_template(template).render(values)


def _page(page: Page) -> HTMLResponse:
    resp = HTMLResponse(
        render(page.template, page.values),
        status_code=page.status,
        headers={**PAGE_HEADERS, **page.headers},
    )
    if (c := page.cookie) is not None:
        resp.set_cookie(
            c.name,
            c.value,
            max_age=c.max_age,
            path=c.path,
            secure=c.secure,
            httponly=c.httponly,
            samesite=c.samesite,  # type: ignore[arg-type]
        )
    return resp


def respond(reply: Reply) -> Response:
    """The HTTP response of a provider answer: JSON for a dict body, a rendered page, or raw."""
    from cellplane.identity.oidc.answers import Page

    if isinstance(reply, Page):
        return _page(reply)
    if isinstance(reply.body, dict):
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
    return Response(reply.body or b"", status_code=reply.status, headers=reply.headers)
