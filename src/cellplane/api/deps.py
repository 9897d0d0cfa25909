"""Request dependencies: the running services, the caller (bearer token -> Principal), idempotency.

Every route declares the permission it needs with `require(...)`; the identity service later swaps
the authenticator without touching the routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from cellplane.errors import Forbidden, Unauthorized, ValidationFailed
from cellplane.services import hosts as hosts_mod
from cellplane.services.auth import Authenticator
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import body_hash

__all__ = ["IdempotencyContext", "agent_principal", "idempotency", "require", "services"]


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return token.strip()


def require(permission: str) -> Callable[[Request], Principal]:
    """A dependency that admits callers holding `permission` (recorded for the route policy test)."""

    def dep(request: Request) -> Principal:
        authn: Authenticator = request.app.state.authenticator
        principal = authn.authenticate(_bearer(request))
        if not principal.can(permission):
            raise Forbidden(f"this needs the {permission!r} permission")
        return principal

    dep.permission = permission  # type: ignore[attr-defined]
    return dep


def agent_principal(request: Request, host_id: str) -> Principal:
    return hosts_mod.authenticate_host(services(request), host_id, _bearer(request))


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
