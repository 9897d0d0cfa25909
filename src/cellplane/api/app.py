"""The API application factory: routers, error mapping, metrics, and the controller's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select

from cellplane import __version__
from cellplane.api import (
    errors,
    guard,
    routes_agent,
    routes_cells,
    routes_clusters,
    routes_directory,
    routes_identity,
    routes_ops,
    routes_pki,
    routes_quotas,
    routes_system,
)
from cellplane.api.jsonresp import JSONResponse
from cellplane.clusters.executor import run_cluster_executor
from cellplane.controller.loop import run_controller
from cellplane.identity.authn import Authenticator
from cellplane.metrics import REQUEST_SECONDS, register_cell_states
from cellplane.services import audit
from cellplane.services.context import Principal, Services
from cellplane.state.models import Cell

__all__ = ["create_app"]


def _cell_counts(svc: Services) -> Callable[[], dict[str, int]]:
    def counts() -> dict[str, int]:
        with svc.db.reader() as s:
            rows = s.execute(select(Cell.state, func.count(Cell.id)).group_by(Cell.state)).all()
            return {str(state): int(n) for state, n in rows}

    return counts


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


def _streamed_upload(method: str, path: str) -> bool:
    """Image import streams its body to disk under its own, larger limit."""
    return method == "POST" and path == "/v1/images"


def create_app(svc: Services, *, run_controllers: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.notifier.bind(asyncio.get_running_loop())
        # API worker threads and background threads, sized with the database pool (state/db.py).
        svc.db.sizing.apply_to_running_loop()
        # Agents answer plain HTTP today; not loading the CA bundle saves ~3 MB of resident memory.
        app.state.agent_client = httpx.AsyncClient(timeout=30, verify=False)
        loops = (
            [
                asyncio.create_task(run_controller(svc)),
                asyncio.create_task(run_cluster_executor(svc)),
            ]
            if run_controllers
            else []
        )
        try:
            yield
        finally:
            for task in loops:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.agent_client.aclose()

    app = FastAPI(
        title="Cellplane",
        version=__version__,
        description="Cells, clusters and identity on your own machines.",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.services = svc
    app.state.authenticator = Authenticator(svc)
    register_cell_states(_cell_counts(svc))
    errors.install(app)
    # Added last, so it runs first: nothing reaches a route that the guard refuses.
    app.add_middleware(
        guard.RequestGuard,
        max_body_bytes=svc.max_body_bytes,
        streamed=_streamed_upload,
    )

    @app.middleware("http")
    async def timing(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        REQUEST_SECONDS.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        if request.method in _CHANGES and not request.url.path.startswith(_SELF_AUDITED):
            await run_in_threadpool(_audit_request, svc, request, path, response.status_code)
        return response

    routers = (
        routes_system,
        routes_ops,
        routes_cells,
        routes_clusters,
        routes_agent,
        routes_identity,
        routes_directory,
        routes_quotas,
        routes_pki,
    )
    for r in routers:
        app.include_router(r.router)
    app.state.api_routes = [route for r in routers for route in r.router.routes]
    return app
