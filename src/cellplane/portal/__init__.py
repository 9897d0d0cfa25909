"""The self-service portal: server-rendered pages (Jinja2) for developers and operators, at
``/portal`` of the server (`install`).

Its own layer beside `api/`: it signs people in as an OAuth client of the tenant's issuer
(authorization code + PKCE, `oauth`, `auth`), keeps a server-side session (`session`), and calls
`services/` with the caller's Principal, as `api/` does (`data`; why not the SDK: see there).
Pages: `pages` (dashboard, cells), `ops` (hosts, quotas), `streams` (server-sent events: a cell's
status and logs, tasks), `clusters` and `cluster_ops`, `volumes`, `task_pages`, `image_pages`,
`confirm` (the page before every Delete); the operators' `admin` (tenants, projects),
`directory`, `audit_pages` (audit log, certificates) over `admin_data` and `operator_web`;
`forms` reads forms into the API's request models. htmx is vendored under
`static/` (with its licence); `static/portal.js` follows the event streams. See docs/portal.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = ["create_portal", "install"]


class _OnFirstRequest:
    """The portal's ASGI app, built on its first request: its modules (Starlette's routing and
    static files, Jinja2, the pages; ~12 MB resident) stay out of a server nobody browses."""

    def __init__(self, parent: object) -> None:
        self._parent = parent
        self._app: Any = None

    def app(self) -> Any:
        """The portal's Starlette app, built now if it was not yet."""
        if self._app is None:  # no await in here: one build per process
            from cellplane.portal.app import create_portal

            self._app = create_portal(self._parent)
        return self._app

    @property
    def state(self) -> Any:
        return self.app().state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app()(scope, receive, send)


def install(app: object) -> None:
    """Mount the portal at `/portal` of the server app (built when first asked for)."""
    app.mount("/portal", _OnFirstRequest(app))  # type: ignore[attr-defined]


def __getattr__(name: str) -> Any:
    if name == "create_portal":
        from cellplane.portal.app import create_portal

        return create_portal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
