"""Request dependencies: the running services, the caller (bearer token -> Principal), idempotency.

Every route declares the permission it needs with `require(...)`; the identity service later swaps
the authenticator without touching the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from cellplane.errors import Forbidden, Unauthorized, ValidationFailed
from cellplane.identity.authn import Authenticator
from cellplane.services import hosts as hosts_mod
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import body_hash

__all__ = [
    "IdempotencyContext",
    "agent_beat_token",
    "agent_principal",
    "agent_revision",
    "agent_route",
    "authenticate",
    "client_certificate",
    "idempotency",
    "join_route",
    "require",
    "services",
    "services_of",
]


def services_of(request: HTTPConnection) -> Services:
    svc: Services = request.app.state.services
    return svc


async def services(request: Request) -> Services:
    """The `Depends` form of `services_of`. A coroutine so that FastAPI calls it on the event
    loop: a plain function dependency takes a trip through the thread pool on every request,
    and waits for a free thread when they are all busy (docs/scale.md, part 6)."""
    return services_of(request)


def _bearer(request: HTTPConnection) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return token.strip()


# Security schemes: they put each route's policy into the OpenAPI document (`security` with the
# permission as its scope), which the route-policy test walks; the checks are ours, not FastAPI's.
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An access token from a tenant's issuer (/identity/{tenant}) or a personal "
    "access token (cpt_...). The scope listed per operation is the permission it needs.",
)
HOST_TOKEN = HTTPBearer(
    auto_error=False, scheme_name="hostToken", description="The token an agent got at register."
)
JOIN_TOKEN = HTTPBearer(
    auto_error=False, scheme_name="joinToken", description="The deployment's join token."
)


def client_certificate(request: HTTPConnection) -> Principal | None:
    """With no Authorization header, the user or host of a TLS client certificate (mTLS; see
    api/tls.py), None if none was presented; a bad certificate answers 401 naming why."""
    if "authorization" in request.headers:
        return None
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    from cellplane.identity import mtls  # only for mutual TLS: x509 stays out otherwise

    return mtls.principal_from_client_cert(request.app.state.services, list(chain))


def authenticate(request: HTTPConnection) -> Principal:
    """The caller behind the request's (or WebSocket handshake's) credentials; Unauthorized
    without valid ones."""
    principal = client_certificate(request)
    if principal is not None:
        return principal
    authn: Authenticator = request.app.state.authenticator
    base = str(request.base_url)
    if request.scope.get("type") == "websocket":  # ws://, wss://: the issuer is http(s)://
        base = "http" + base.removeprefix("ws")
    return authn.authenticate(_bearer(request), request_base=base)


def require(permission: str) -> Callable[..., Principal]:
    """A dependency that admits callers holding `permission` somewhere; services then check the
    project or tenant of the resource itself (another tenant's resource answers 404)."""

    def dep(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(BEARER, scopes=[permission]),
    ) -> Principal:
        principal = authenticate(request)
        if not principal.can(permission):
            raise Forbidden(f"this needs the {permission!r} permission")
        request.state.principal = principal
        return principal

    dep.permission = permission  # type: ignore[attr-defined]
    return dep


#: Declares an agent route's policy (host token; the route checks it against the host id).
agent_route = Security(HOST_TOKEN, scopes=["agent"])
#: Declares the register route's policy (the join token; checked by the service).
join_route = Security(JOIN_TOKEN, scopes=["join"])


def agent_principal(request: Request, host_id: str) -> Principal:
    cert = client_certificate(request)  # a host certificate stands in for the host token
    if cert is not None:
        if cert.kind != "agent" or cert.subject != host_id:
            raise Unauthorized("host credential is not valid")
        return cert
    return hosts_mod.authenticate_host(services_of(request), host_id, _bearer(request))


async def agent_beat_token(request: Request, host_id: str) -> str | None:
    """`agent_principal` for a heartbeat, on the event loop when it can be: the host's bearer
    token (None: its client certificate), checked against the database unless this process
    checked the same token lately (`hosts.token_remembered`). The beat's write is conditional on
    the token (`hosts.beat`)."""
    if "authorization" in request.headers:
        token = _bearer(request)
        if hosts_mod.token_remembered(services_of(request), host_id, token):
            return token
    await run_in_threadpool(agent_principal, request, host_id)
    return _bearer(request) if "authorization" in request.headers else None


def agent_revision(request: Request, host_id: str) -> int:
    """`agent_principal`'s check and the host's revision, in one read (the long poll)."""
    cert = client_certificate(request)
    if cert is not None:
        if cert.kind != "agent" or cert.subject != host_id:
            raise Unauthorized("host credential is not valid")
        return hosts_mod.authenticated_revision(services_of(request), host_id, None)
    return hosts_mod.authenticated_revision(services_of(request), host_id, _bearer(request))


@dataclass(frozen=True)
class IdempotencyContext:
    key: str | None
    fingerprint: str
    method: str
    path: str


async def _idempotency(request: Request) -> IdempotencyContext:
    key = request.headers.get("idempotency-key")
    if key is not None and not (1 <= len(key) <= 255):
        raise ValidationFailed.field("Idempotency-Key", "must be 1-255 characters")
    body = await request.body()
    path = request.url.path + ("?" + request.url.query if request.url.query else "")
    return IdempotencyContext(key, body_hash(request.method, path, body), request.method, path)


idempotency: Callable[[Request], Awaitable[IdempotencyContext]] = _idempotency
