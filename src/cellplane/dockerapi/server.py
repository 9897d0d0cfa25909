"""One Docker-compatible endpoint: an aiohttp application speaking the Docker Engine API for one
project, and its middlewares (Docker's error shape, the API version prefix, who is calling, audit).

Who may call: a client certificate from Cellplane's CA (`docker --tlsverify`) or
`Authorization: Bearer <token>`, of a user (or service account) holding a role in the endpoint's
project; a viewer (`cells:read` only) may read and wait, not change anything.
"""

from __future__ import annotations

import hashlib
import platform
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from cryptography import x509

from cellplane import __version__
from cellplane.dockerapi import attach, containers, execs, extras, resources, streams
from cellplane.dockerapi import images as images_routes
from cellplane.dockerapi.base import (
    AUDITED,
    CTX,
    PRINCIPAL,
    EndpointContext,
    audit_event,
    blocking,
    context,
    json_response,
    principal,
    project_cells,
)
from cellplane.dockerapi.mapping import API_VERSION, MIN_API_VERSION, Refused, check_api_version
from cellplane.dockerapi.views import docker_state
from cellplane.errors import CellplaneError, Forbidden, NotFound, Unauthorized
from cellplane.services import audit, docker_endpoints, images
from cellplane.services.context import Principal

__all__ = ["make_app"]

log = structlog.get_logger("cellplane.dockerapi")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: POSTs that change nothing: a project viewer may make them.
_READ_POSTS = ("/wait", "/attach")
_OS = "linux"


def _status(exc: CellplaneError) -> int:
    return 400 if exc.status == 422 else exc.status


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as Docker answers it: `{"message": ...}` with the status."""
    try:
        return await handler(request)
    except Refused as exc:
        return json_response({"message": exc.message}, status=exc.status)
    except CellplaneError as exc:
        return json_response({"message": str(exc)}, status=_status(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = "page not found" if exc.status == 404 else exc.reason
        return json_response({"message": message}, status=exc.status)
    except Exception:
        log.exception("docker endpoint request failed", path=request.path)
        return json_response({"message": "internal error (see the server's log)"}, status=500)


def _peer_certificate(request: web.Request) -> bytes | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return der or None


def _authenticate(ctx: EndpointContext, request: web.Request, der: bytes | None) -> Principal:
    auth = request.headers.get("Authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        return ctx.authn.authenticate(token.strip())
    if der:
        from cellplane.identity import mtls

        p = mtls.principal_from_client_cert(ctx.svc, [der])
        if p is not None:
            return p
    raise Unauthorized(
        "this endpoint needs a client certificate from Cellplane's CA (docker --tlsverify, "
        "see `cellplane endpoint env`) or 'Authorization: Bearer <token>'"
    )


def _admission_key(request: web.Request) -> tuple[tuple[bytes, str] | None, str, bytes | None]:
    """The request's admission key (None for a bearer token or no certificate), the
    permission it needs and the client certificate (DER)."""
    write = request.method not in ("GET", "HEAD") and not request.path.endswith(_READ_POSTS)
    permission = "cells:write" if write else "cells:read"
    der = _peer_certificate(request)
    if der and not request.headers.get("Authorization"):
        return (hashlib.sha256(der).digest(), permission), permission, der
    return None, permission, der


def _admit(ctx: EndpointContext, request: web.Request) -> Principal:
    key, permission, der = _admission_key(request)
    if key is not None:
        kept = ctx.admissions.get(key, time.time())
        if kept is not None:
            return kept  # admitted a moment ago (`dockerapi.admissions`)
    p = _authenticate(ctx, request, der)
    if p.kind == "agent":
        raise Forbidden("a host certificate is not a user's")
    try:
        docker_endpoints.authorize(ctx.svc, p, ctx.project_id, permission)
    except NotFound as exc:
        raise Forbidden(f"{p.name or p.subject} holds no role in this endpoint's project") from exc
    if key is not None and der is not None:
        ends = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
        ctx.admissions.put(key, p, time.time(), ends)
    return p


def _kept_admission(ctx: EndpointContext, request: web.Request) -> Principal | None:
    """The request's admission if one is kept: a hash and a lookup, done on the event loop
    (a trip to a worker thread cost more than the lookup, on the path of every request)."""
    key, _, _ = _admission_key(request)
    return None if key is None else ctx.admissions.get(key, time.time())


@web.middleware
async def version_and_caller(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Who is calling first: a caller who is refused learns nothing of the route, not even
    # whether its version prefix is one the endpoint knows (401/403 on every route).
    ctx = context(request)
    kept = _kept_admission(ctx, request)
    request[PRINCIPAL] = kept if kept is not None else await blocking(_admit, ctx, request)
    version = request.match_info.get("version")
    if version is not None:
        check_api_version(version)
    return await handler(request)


@web.middleware
async def audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One audit event per changing request, as the REST API records them: the outermost
    middleware, so refusals (Docker's error answers, denied admissions) are recorded with their
    status too. `docker create` records its own in the cell's transaction."""
    resp = await handler(request)
    changing = request.method in ("POST", "DELETE") and not request.path.endswith(_READ_POSTS)
    if changing and not request.get(AUDITED):
        event = audit_event(request, resp.status)
        try:
            await blocking(audit.record_now, context(request).svc, **event)
        except Exception:
            # A full disk or a database locked past its timeout: the answer still says what
            # happened to the request; the event goes to the log instead.
            log.exception("audit event not recorded", **event)
    return resp


def _headers() -> dict[str, str]:
    return {
        "API-Version": API_VERSION,
        "Docker-Experimental": "false",
        "OSType": _OS,
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
    }


async def ping(request: web.Request) -> web.Response:
    body = b"" if request.method == "HEAD" else b"OK"
    return web.Response(body=body, content_type="text/plain", headers=_headers())


def _version() -> dict[str, Any]:
    return {
        "Platform": {"Name": "Cellplane"},
        "Components": [
            {"Name": "Cellplane", "Version": __version__, "Details": {"ApiVersion": API_VERSION}}
        ],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": _OS,
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
        "KernelVersion": platform.release(),
        "BuildTime": "",
    }


async def version(request: web.Request) -> web.Response:
    resp = json_response(_version())
    resp.headers.update(_headers())
    return resp


async def info(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    items = await blocking(project_cells, ctx, p)
    states = [docker_state(c) for c in items]
    image_count = len(await blocking(images.list_images, ctx.svc))
    v = _version()
    return json_response(
        {
            "ID": ctx.endpoint_id,
            "Name": f"cellplane-{ctx.project_name}",
            "Containers": len(items),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": 0,
            "ContainersStopped": len(items) - states.count("running"),
            "Images": image_count,
            "Driver": "cellplane",
            "DriverStatus": [["Project", ctx.project_name]],
            "OperatingSystem": f"Cellplane {__version__} (project {ctx.project_name})",
            "OSType": _OS,
            "Architecture": v["Arch"],
            "KernelVersion": v["KernelVersion"],
            "ServerVersion": __version__,
            "NCPU": 0,
            "MemTotal": 0,
            "Labels": [f"cellplane.project={ctx.project_name}"],
            "Warnings": [],
        }
    )


def make_app(ctx: EndpointContext) -> web.Application:
    app = web.Application(middlewares=[audited, docker_errors, version_and_caller])
    app[CTX] = ctx
    table: list[tuple[str, str, Any]] = [
        ("GET", "/_ping", ping),
        ("HEAD", "/_ping", ping),
        ("GET", "/version", version),
        ("GET", "/info", info),
        *images_routes.routes(),
        *containers.routes(),
        *streams.routes(),
        *attach.routes(),
        *execs.routes(),
        *extras.routes(),
        *resources.routes(),
    ]
    for method, path, handler in table:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/v{version}" + path, handler)
    return app
