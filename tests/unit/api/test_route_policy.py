"""Every route of the OpenAPI document, against every role, in the caller's tenant and another's.

A route must declare its policy (the permission it needs, as the scope of a security requirement)
or be listed as deliberately public; a route with neither fails here. The expected answer is
derived from the declared permission and `ROLE_PERMISSIONS`, never written per route:

- no credentials: 401;
- a role that does not grant the permission: 403;
- a resource of the other tenant (or of a project the caller has no role in): 404;
- otherwise the request passes the policy (any answer but 401/403/404).
"""

from __future__ import annotations

import re
from pathlib import Path

from cellplane_platform_support import Platform
from cellplane_tenancy_support import (
    BODIES,
    PROJECT_PARAMS,
    PUBLIC,
    ROLES,
    TENANT_PARAMS,
    TenantWorld,
    Worlds,
    declared,
    fill,
    operations,
)

from cellplane.identity.rbac import ROLE_PERMISSIONS


def grants(role: str, permission: str) -> bool:
    real = "project-member" if role == "outsider" else role
    granted = ROLE_PERMISSIONS[real]
    return permission in granted or ("*" in granted and permission != "agent")


def expected(role: str, permission: str, params: set[str], other: bool) -> str:
    if not grants(role, permission):
        return "403"
    if "serial" in params and not other and role not in ("system-admin", "tenant-admin"):
        return "403"  # a certificate is revoked by its owner (the tenant admin here) or an admin
    tenant_params = params & TENANT_PARAMS
    if other and tenant_params:
        if role == "system-admin" and tenant_params == {"tenant"}:
            return "allow"  # the operator manages every tenant
        return "404"
    if role == "outsider" and params & PROJECT_PARAMS:
        return "404"
    return "allow"


def verdict(status: int) -> str:
    if status == 401:
        return "401"
    if status == 403:
        return "403"
    if status == 404:
        return "404"
    return "allow"


def test_every_route_declares_a_policy_and_enforces_it(
    plat: Platform, busybox_archive: Path
) -> None:
    worlds = Worlds(plat, busybox_archive)
    doc = plat.client.get("/openapi.json").json()
    failures: list[str] = []
    checked = 0
    for method, path, op in operations(doc):
        params = set(re.findall(r"\{(\w+)\}", path))
        policy = declared(op)
        if policy is None:
            if path not in PUBLIC:
                failures.append(f"{method} {path}: no declared policy and not listed as public")
            continue
        scheme, permission = policy
        key = f"{method} {path}"
        if "requestBody" in op and key not in BODIES and path != "/v1/images":
            failures.append(f"{key}: add a valid body to BODIES")
            continue

        def call(
            headers: dict[str, str], world: TenantWorld, method: str = method, path: str = path
        ) -> int:
            url = fill(path, world, plat, worlds)
            key = f"{method} {path}"
            body = BODIES[key](worlds.a) if key in BODIES else None
            r = plat.client.request(method, url, json=body, headers=headers)
            return int(r.status_code)

        # No credentials at all.
        got = verdict(call({}, worlds.a))
        checked += 1
        if got != "401":
            failures.append(f"{key} anonymous: got {got}, want 401")
        if scheme != "bearer":
            # Agent routes take the host token, register the join token: a user's token is
            # not one of those.
            got = verdict(call(worlds.a.tokens["tenant-admin"], worlds.a))
            checked += 1
            if got not in ("401", "403"):
                failures.append(f"{key} with a user token: got {got}, want 401/403")
            continue
        for other in (True, False):
            for role in ROLES:
                if method == "DELETE":
                    worlds.refresh(worlds.a)
                want = expected(role, permission, params, other)
                world = worlds.b if other else worlds.a
                got = verdict(call(worlds.a.tokens[role], world))
                checked += 1
                if got != want:
                    where = "tenant B's" if other else "own"
                    failures.append(f"{key} as {role} on {where}: got {got}, want {want}")
    assert checked > 500
    assert not failures, "\n".join(failures)
