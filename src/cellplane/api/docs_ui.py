"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc`, served with no network access.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on an offline host.
Here their scripts and styles come from the `fastapi-offline` package (Swagger UI 5, which
renders the OpenAPI 3.1 document FastAPI writes, and ReDoc 2), mounted under `/docs/assets`.
Each page carries a Content-Security-Policy that allows only this server's own assets and the
page's inline script (by its hash): no other origin can be reached from it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse

__all__ = ["ASSETS_URL", "assets_dir", "install"]

#: Where the pages' scripts, styles and icon are served.
ASSETS_URL = "/docs/assets"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_dir() -> Path:
    """The packaged Swagger UI and ReDoc files (`swagger-ui-bundle.js`, `swagger-ui.css`,
    `redoc.standalone.js`, `favicon.png`)."""
    return Path(str(files("fastapi_offline") / "static"))


def _csp(html: str) -> str:
    """Own assets only; inline scripts by hash; the UIs' injected styles and inline images;
    ReDoc's search worker from a blob; no framing."""
    sources = ["'self'"] + [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    ]
    return (
        f"default-src 'none'; script-src {' '.join(sources)}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


def _page(response: HTMLResponse) -> HTMLResponse:
    html = bytes(response.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": _csp(html)})


def install(app: FastAPI) -> None:
    """`/docs`, `/redoc` and their assets on `app` (created with docs_url=redoc_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} API",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                oauth2_redirect_url=None,
                # No badge from the public validator service: the page reaches no other host.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _page(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} API",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
