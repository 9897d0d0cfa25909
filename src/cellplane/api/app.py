"""The API application factory: routers, error mapping, metrics, audit, and the lifespan hook."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable

import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellplane import __version__
from cellplane.api import (
    docs_ui,
    errors,
    guard,
    openapi,
    routes_agent,
    routes_cells,
    routes_clusters,
    routes_directory,
    routes_docker,
    routes_exec,
    routes_hostjoin,
    routes_identity,
    routes_networks,
    routes_ops,
    routes_pki,
    routes_quotas,
    routes_services,
    routes_system,
)
from cellplane.api.jsonresp import JSONResponse
from cellplane.identity.authn import Authenticator
from cellplane.metrics import REQUEST_SECONDS, register_cell_states
from cellplane.services import agent_tls, audit, system
from cellplane.services.context import Principal, Services

__all__ = ["Background", "create_app"]


log = structlog.get_logger("cellplane.api")

_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The agent protocol reports every few seconds (not user changes); the OIDC endpoints record
# their own authentication events.
_SELF_AUDITED = ("/v1/agent/", "/identity/")


def _audit_request(svc: Services, request: Request, route: str, status: int) -> None:
    """One audit event per state-changing request: who, what, when, from where, outcome."""
    principal: Principal | None = getattr(request.state, "principal", None)
    outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
    audit.record_now(
        svc,
        tenant_id=principal.tenant_id if principal else None,
        actor=audit.actor_of(principal),
        action=f"{request.method} {route}",
        target=request.url.path,
        outcome=outcome,
        source=request.client.host if request.client else "",
        detail={"status": status},
    )


class TimingAndAudit:
    """Request duration metric per route, and `_audit_request` for state-changing requests,
    both when the answer starts (before the client sees it). Pure ASGI: Starlette's
    BaseHTTPMiddleware (`@app.middleware("http")`) cost a task group and a stream per request."""

    def __init__(self, app: ASGIApp, *, svc: Services) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                path = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"]
                REQUEST_SECONDS.labels(method, path, str(status)).observe(
                    time.perf_counter() - started
                )
                if method in _CHANGES and not scope["path"].startswith(_SELF_AUDITED):
                    request = Request(scope)
                    try:
                        await run_in_threadpool(_audit_request, self.svc, request, path, status)
                    except Exception as exc:
                        # A full disk or a database locked past its timeout: the answer still
                        # says what happened to the request; the event goes to the log instead.
                        if errors.database_problem(exc) is None:
                            raise
                        log.error(
                            "audit event not recorded",
                            reason=str(exc)[:300],
                            action=f"{method} {path}",
                            target=scope["path"],
                            status=status,
                        )
            await send(message)

        await self.app(scope, receive, send_timed)


def _streamed_upload(method: str, path: str) -> bool:
    """Image import (the API's and the portal's) streams its body to disk under its own,
    larger limit."""
    return method == "POST" and path in ("/v1/images", "/portal/images/upload")


def _json_route(path: str) -> bool:
    """The API's routes take JSON bodies (the OIDC endpoints and login pages take forms)."""
    return path.startswith("/v1/")


Background = Callable[[], contextlib.AbstractAsyncContextManager[None]]
"""Work that lives as long as the app's lifespan (the server installs its loops here)."""


def create_app(svc: Services, *, run_controllers: bool = True) -> FastAPI:
    """The API application over `svc`.

    The factory starts no background work. Its lifespan binds the notifier to the event loop,
    sizes the thread pools and opens the client to the agents, then enters every entry of
    ``app.state.background`` (empty here; :func:`cellplane.daemon.run_server` installs the
    controller loops with :func:`cellplane.controller.runtime.install`). ``run_controllers=False``
    skips those entries, for callers that install them but drive the controller by hand.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.notifier.bind(asyncio.get_running_loop())
        # API worker threads and background threads, sized with the database pool (state/db.py).
        svc.db.sizing.apply_to_running_loop()
        # Pinned mutual TLS to agents of a TLS deployment, plain HTTP otherwise (no CA bundle:
        # ~3 MB of resident memory saved).
        app.state.agent_client = agent_tls.async_client(svc)
        try:
            async with contextlib.AsyncExitStack() as stack:
                if run_controllers:
                    for work in app.state.background:
                        await stack.enter_async_context(work())
                yield
        finally:
            await app.state.agent_client.aclose()

    app = FastAPI(
        title="Cellplane",
        version=__version__,
        description="Cells, clusters and identity on your own machines.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,  # docs_ui serves /docs and /redoc from packaged assets (no CDN)
        redoc_url=None,
        # The operator may hide the document and its pages (ServerSettings.api_docs): 404.
        openapi_url="/openapi.json" if svc.api_docs else None,
    )
    app.state.services = svc
    background: list[Background] = []
    app.state.background = background
    app.state.authenticator = Authenticator(svc)
    register_cell_states(functools.partial(system.cell_counts, svc))
    errors.install(app)
    # Added last, so it runs first: nothing reaches a route that the guard refuses.
    app.add_middleware(
        guard.RequestGuard,
        max_body_bytes=svc.max_body_bytes,
        max_header_bytes=svc.max_header_bytes,
        streamed=_streamed_upload,
        json_only=_json_route,
    )

    app.add_middleware(TimingAndAudit, svc=svc)

    # FastAPI tries the routes in this order (each router's routes up to the match, twice for
    # the matching router), ~2.5 us per route tried. The OIDC endpoints come first: clients call
    # /token at machine rate, and no other route can match a path under /identity/ (nor theirs
    # one of these), so the order changes nothing else; it costs other requests 10 misses.
    routers = (
        routes_identity,
        routes_system,
        routes_ops,
        routes_hostjoin,
        routes_cells,
        routes_networks,
        routes_exec,
        routes_docker,
        routes_clusters,
        routes_services,
        routes_agent,
        routes_directory,
        routes_quotas,
        routes_pki,
    )
    for r in routers:
        app.include_router(r.router)
    app.state.api_routes = [route for r in routers for route in r.router.routes]
    openapi.install(app)
    if svc.api_docs:
        docs_ui.install(app)
    return app
