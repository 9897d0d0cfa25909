"""Directory API: tenants (system admins), and a tenant's users, groups, OAuth clients, role
assignments, LDAP federation, signing keys and audit log (tenant admins)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.openapi import problem_response
from cellplane.api.respond import idempotent
from cellplane.identity import directory
from cellplane.identity.directory import (
    AssignmentCreate,
    ClientCreate,
    GroupCreate,
    IsolationPolicy,
    LdapBody,
    TenantCreate,
    UserCreate,
    UserUpdate,
)
from cellplane.identity.ratelimit import RateLimiter
from cellplane.services import audit
from cellplane.services.context import Principal, Services

__all__ = ["PUBLIC_ROUTES", "router"]

router = APIRouter()
PUBLIC_ROUTES: set[str] = set()


# -- tenants ---------------------------------------------------------------------------------------


@router.get("/v1/tenants", tags=["tenants"], response_model=models.TenantList)
def list_tenants(
    svc: Services = Depends(services), p: Principal = Depends(require("tenants:read"))
) -> dict[str, Any]:
    return directory.list_tenants(svc, p)


@router.post("/v1/tenants", status_code=201, tags=["tenants"], response_model=models.TenantCreated)
def create_tenant(
    body: TenantCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("tenants:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: directory.create_tenant(svc, s, p, body))


@router.get("/v1/tenants/{tenant}", tags=["tenants"], response_model=models.Tenant)
def get_tenant(
    tenant: str, svc: Services = Depends(services), p: Principal = Depends(require("tenants:read"))
) -> dict[str, Any]:
    return directory.get_tenant(svc, p, tenant)


@router.patch("/v1/tenants/{tenant}", tags=["tenants"], response_model=models.TenantUpdated)
def update_tenant(
    tenant: str,
    body: IsolationPolicy,
    svc: Services = Depends(services),
    p: Principal = Depends(require("tenants:write")),
) -> dict[str, Any]:
    """Set the tenant's minimum isolation class; existing cells below it are listed, unchanged."""
    return directory.update_tenant(svc, p, tenant, body)


@router.delete("/v1/tenants/{tenant}", status_code=204, tags=["tenants"])
def delete_tenant(
    tenant: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("tenants:write")),
) -> Response:
    directory.delete_tenant(svc, p, tenant)
    return Response(status_code=204)


# -- users -----------------------------------------------------------------------------------------


@router.get("/v1/users", tags=["users"], response_model=models.UserList)
def list_users(
    svc: Services = Depends(services), p: Principal = Depends(require("users:read"))
) -> dict[str, Any]:
    return directory.list_users(svc, p)


@router.post("/v1/users", status_code=201, tags=["users"], response_model=models.UserCreated)
def create_user(
    body: UserCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("users:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: directory.create_user(svc, s, p, body))


@router.get("/v1/users/{user}", tags=["users"], response_model=models.User)
def get_user(
    user: str, svc: Services = Depends(services), p: Principal = Depends(require("users:read"))
) -> dict[str, Any]:
    return directory.get_user(svc, p, user)


@router.patch("/v1/users/{user}", tags=["users"], response_model=models.User)
def update_user(
    user: str,
    body: UserUpdate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("users:write")),
) -> dict[str, Any]:
    return directory.update_user(svc, p, user, body)


@router.delete("/v1/users/{user}", status_code=204, tags=["users"])
def delete_user(
    user: str, svc: Services = Depends(services), p: Principal = Depends(require("users:write"))
) -> Response:
    directory.delete_user(svc, p, user)
    return Response(status_code=204)


# -- groups ----------------------------------------------------------------------------------------


@router.get("/v1/groups", tags=["groups"], response_model=models.GroupList)
def list_groups(
    svc: Services = Depends(services), p: Principal = Depends(require("groups:read"))
) -> dict[str, Any]:
    return directory.list_groups(svc, p)


@router.post("/v1/groups", status_code=201, tags=["groups"], response_model=models.Group)
def create_group(
    body: GroupCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("groups:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: directory.create_group(svc, s, p, body))


@router.get("/v1/groups/{group}", tags=["groups"], response_model=models.Group)
def get_group(
    group: str, svc: Services = Depends(services), p: Principal = Depends(require("groups:read"))
) -> dict[str, Any]:
    return directory.get_group(svc, p, group)


@router.delete("/v1/groups/{group}", status_code=204, tags=["groups"])
def delete_group(
    group: str, svc: Services = Depends(services), p: Principal = Depends(require("groups:write"))
) -> Response:
    directory.delete_group(svc, p, group)
    return Response(status_code=204)


@router.put("/v1/groups/{group}/members/{user}", tags=["groups"], response_model=models.Group)
def add_member(
    group: str,
    user: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("groups:write")),
) -> dict[str, Any]:
    return directory.add_member(svc, p, group, user)


@router.delete("/v1/groups/{group}/members/{user}", tags=["groups"], response_model=models.Group)
def remove_member(
    group: str,
    user: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("groups:write")),
) -> dict[str, Any]:
    return directory.remove_member(svc, p, group, user)


# -- clients ---------------------------------------------------------------------------------------


@router.get("/v1/clients", tags=["clients"], response_model=models.ClientList)
def list_clients(
    svc: Services = Depends(services), p: Principal = Depends(require("clients:read"))
) -> dict[str, Any]:
    return directory.list_clients(svc, p)


@router.post(
    "/v1/clients", status_code=201, tags=["clients"], response_model=models.ClientWithSecret
)
def create_client(
    body: ClientCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("clients:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: directory.create_client(svc, s, p, body))


@router.get("/v1/clients/{client}", tags=["clients"], response_model=models.Client)
def get_client(
    client: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("clients:read")),
) -> dict[str, Any]:
    return directory.get_client(svc, p, client)


@router.post(
    "/v1/clients/{client}/secret", tags=["clients"], response_model=models.ClientWithSecret
)
def rotate_client_secret(
    client: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("clients:write")),
) -> dict[str, Any]:
    return directory.rotate_client_secret(svc, p, client)


@router.delete("/v1/clients/{client}", status_code=204, tags=["clients"])
def delete_client(
    client: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("clients:write")),
) -> Response:
    directory.delete_client(svc, p, client)
    return Response(status_code=204)


# -- role assignments ------------------------------------------------------------------------------


@router.get("/v1/role-assignments", tags=["roles"], response_model=models.RoleAssignmentList)
def list_assignments(
    svc: Services = Depends(services), p: Principal = Depends(require("roles:read"))
) -> dict[str, Any]:
    return directory.list_assignments(svc, p)


@router.post(
    "/v1/role-assignments",
    status_code=201,
    tags=["roles"],
    response_model=models.RoleAssignment,
    responses={
        404: problem_response(404, "The user, group, client or project named does not exist.")
    },
)
def create_assignment(
    body: AssignmentCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("roles:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: directory.create_assignment(svc, s, p, body))


@router.delete("/v1/role-assignments/{assignment_id}", status_code=204, tags=["roles"])
def delete_assignment(
    assignment_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("roles:write")),
) -> Response:
    directory.delete_assignment(svc, p, assignment_id)
    return Response(status_code=204)


# -- LDAP, keys, audit -------------------------------------------------------------------------------


@router.get(
    "/v1/identity/ldap",
    tags=["identity"],
    response_model=models.LdapSettings,
    responses={404: problem_response(404, "This tenant has no LDAP federation.")},
)
def get_ldap(
    svc: Services = Depends(services), p: Principal = Depends(require("identity:write"))
) -> dict[str, Any]:
    return directory.get_ldap(svc, p)


#: LDAP settings checks per tenant: 5 at once, then one every 12 s (each may take a worker
#: thread for the connect timeout; see directory.LDAP_CHECK_FAILED).
LDAP_CHECKS = RateLimiter(rate_per_s=1 / 12, burst=5)


@router.put(
    "/v1/identity/ldap",
    tags=["identity"],
    response_model=models.LdapSettings,
    responses={429: problem_response(429, "Too many settings checks; see Retry-After.")},
)
async def set_ldap(
    body: LdapBody,
    svc: Services = Depends(services),
    p: Principal = Depends(require("identity:write")),
) -> dict[str, Any]:
    if body.check and (wait := LDAP_CHECKS.take(p.tenant_id, time.monotonic())) is not None:
        raise HTTPException(
            429,
            "Too many LDAP settings checks; try again later.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    started = time.monotonic()
    try:
        result: dict[str, Any] = await run_in_threadpool(directory.set_ldap, svc, p, body)
    except directory.LdapCheckFailed:
        # Every failure takes as long as a timeout: refused and silent ports look alike.
        await asyncio.sleep(max(0.0, directory.LDAP_CHECK_FLOOR_S - (time.monotonic() - started)))
        raise
    return result


@router.delete(
    "/v1/identity/ldap",
    status_code=204,
    tags=["identity"],
    responses={404: problem_response(404, "This tenant has no LDAP federation.")},
)
def delete_ldap(
    svc: Services = Depends(services), p: Principal = Depends(require("identity:write"))
) -> Response:
    directory.delete_ldap(svc, p)
    return Response(status_code=204)


@router.post("/v1/identity/keys/rotate", tags=["identity"], response_model=models.KeyRotation)
def rotate_keys(
    svc: Services = Depends(services), p: Principal = Depends(require("identity:write"))
) -> dict[str, Any]:
    """A new signing key for the caller's tenant; the old one verifies until its tokens expire."""
    now = time.time()
    kid = svc.tokens.rotate(p.tenant_id, now)
    audit.record_now(
        svc,
        tenant_id=p.tenant_id,
        actor=audit.actor_of(p),
        action="keys.rotate",
        target=kid,
    )
    return {"kid": kid, "jwks": svc.tokens.jwks(p.tenant_id, now)}


@router.get("/v1/audit", tags=["audit"], response_model=models.AuditList)
def list_audit(
    limit: int = Query(default=100, ge=1, le=1000),
    before: str | None = Query(default=None, max_length=64),
    action: str | None = Query(default=None, max_length=64),
    outcome: str | None = Query(default=None, max_length=16),
    actor: str | None = Query(default=None, max_length=256),
    all_tenants: bool = False,
    svc: Services = Depends(services),
    p: Principal = Depends(require("audit:read")),
) -> dict[str, Any]:
    return audit.list_events(
        svc,
        p,
        limit=limit,
        before=before,
        action=action,
        outcome=outcome,
        actor=actor,
        all_tenants=all_tenants,
    )
