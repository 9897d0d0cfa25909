"""Property: a caller of tenant A can neither see nor change anything of tenant B.

Hypothesis picks any route of the OpenAPI document, any role of tenant A, and for every path
parameter either A's or B's resource. Whatever the answer, it never names one of B's resources,
and B's rows in the database are exactly as before.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cellplane_platform_support import Platform
from cellplane_tenancy_support import (
    BODIES,
    PUBLIC,
    TENANT_PARAMS,
    TenantWorld,
    Worlds,
    declared,
    fill,
    operations,
    serial_of,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, or_, select

from cellplane.state.cluster_models import Cluster
from cellplane.state.identity_models import Group as GroupRow
from cellplane.state.identity_models import (
    GroupMember,
    IssuedCertificateRecord,
    LdapConfig,
    OAuthClient,
    Quota,
    RoleAssignment,
    User,
)
from cellplane.state.models import Cell, Project, Volume

CALLERS = ("tenant-admin", "project-member", "project-viewer", "outsider")


def _rows(objs: Any) -> list[str]:
    out = []
    for o in objs:
        cols = {a.key: getattr(o, a.key) for a in inspect(o).mapper.column_attrs}
        out.append(json.dumps(cols, sort_keys=True, default=str))
    return sorted(out)


def snapshot(plat: Platform, b: TenantWorld) -> dict[str, list[str]]:
    """Every row that belongs to tenant B, as text."""
    with plat.svc.db.reader() as s:
        projects = list(s.scalars(select(Project.id).where(Project.tenant_id == b.tenant_id)))
        users = list(s.scalars(select(User.id).where(User.tenant_id == b.tenant_id)))
        in_projects = {
            "projects": s.scalars(select(Project).where(Project.tenant_id == b.tenant_id)),
            "cells": s.scalars(select(Cell).where(Cell.project_id.in_(projects))),
            "volumes": s.scalars(select(Volume).where(Volume.project_id.in_(projects))),
            "clusters": s.scalars(select(Cluster).where(Cluster.project_id.in_(projects))),
            "users": s.scalars(select(User).where(User.tenant_id == b.tenant_id)),
            "groups": s.scalars(select(GroupRow).where(GroupRow.tenant_id == b.tenant_id)),
            "members": s.scalars(select(GroupMember).where(GroupMember.user_id.in_(users))),
            "clients": s.scalars(select(OAuthClient).where(OAuthClient.tenant_id == b.tenant_id)),
            "assignments": s.scalars(
                select(RoleAssignment).where(
                    or_(
                        RoleAssignment.tenant_id == b.tenant_id,
                        RoleAssignment.subject_id.in_(users),
                    )
                )
            ),
            "quotas": s.scalars(select(Quota).where(Quota.tenant_id == b.tenant_id)),
            "certs": s.scalars(
                select(IssuedCertificateRecord).where(
                    IssuedCertificateRecord.tenant_id == b.tenant_id
                )
            ),
            "ldap": s.scalars(select(LdapConfig).where(LdapConfig.tenant_id == b.tenant_id)),
        }
        return {k: _rows(v) for k, v in in_projects.items()}


def b_identifiers(b: TenantWorld) -> set[str]:
    return {
        b.tenant_id,
        b.project_id,
        b.side_project_id,
        *(v for k, v in b.ids.items() if k not in ("tenant", "project")),
        *b.user_ids.values(),
    }


def test_tenant_a_never_sees_or_changes_tenant_b(plat: Platform, busybox_archive: Path) -> None:
    worlds = Worlds(plat, busybox_archive)
    doc = plat.client.get("/openapi.json").json()
    ops = [
        (method, path)
        for method, path, op in operations(doc)
        if path not in PUBLIC
        and (declared(op) or ("", ""))[0] == "bearer"
        # The operator's view of tenants is not a tenant's view (system admins only anyway).
        and not path.startswith("/v1/tenants")
    ]
    assert len(ops) > 50
    if any("{serial}" in path for _, path in ops):
        serial_of(worlds.b, plat, worlds)  # B's certificate exists before the snapshot
    secret = b_identifiers(worlds.b)
    before = snapshot(plat, worlds.b)
    seen: list[int] = []

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        op=st.sampled_from(ops),
        role=st.sampled_from(CALLERS),
        targets=st.lists(st.booleans(), min_size=3, max_size=3),
    )
    def check(op: tuple[str, str], role: str, targets: list[bool]) -> None:
        method, path = op
        params = re.findall(r"\{(\w+)\}", path)
        url = path
        for i, name in enumerate(params):
            world = worlds.b if targets[i % 3] else worlds.a
            url = url.replace("{" + name + "}", fill("{" + name + "}", world, plat, worlds), 1)
        key = f"{method} {path}"
        body = BODIES[key](worlds.a) if key in BODIES else None
        r = plat.client.request(method, url, json=body, headers=worlds.a.tokens[role])
        seen.append(r.status_code)
        names_b = [p for i, p in enumerate(params) if targets[i % 3] and p in TENANT_PARAMS]
        if names_b:
            assert r.status_code in (403, 404), (key, url, role, r.status_code, r.text[:300])
        if path == "/v1/audit":
            # A's audit log records A's own requests, including those naming B's ids: what
            # must hold is that every event is A's.
            if r.status_code == 200:
                assert {e["tenant_id"] for e in r.json()["items"]} <= {worlds.a.tenant_id}
        else:
            # An id the caller sent may come back in the 404 refusing it; nothing else of B.
            sent = url + json.dumps(body)
            leaked = [x for x in secret if x in r.text and x not in sent]
            assert not leaked, (key, url, role, leaked)
        assert snapshot(plat, worlds.b) == before, (key, url, role)

    check()
    assert any(200 <= c < 300 for c in seen), "no call succeeded: the property proved nothing"
