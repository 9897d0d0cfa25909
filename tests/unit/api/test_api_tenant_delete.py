"""Deleting a tenant: everything it owns that is bookkeeping goes with it; what holds real
resources (cells, volumes, clusters) refuses the delete by name; audit history stays."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import inspect, select, text

from cellplane.ids import new_id, utcnow
from cellplane.state.identity_models import (
    AuditEvent,
    AuthCode,
    IssuedCertificateRecord,
    RevokedToken,
)
from cellplane.state.models import Volume


def _tenant(plat: Platform, name: str = "acme") -> dict[str, Any]:
    r = plat.client.post(
        "/v1/tenants", json={"name": name, "admin": {"name": "root"}}, headers=plat.admin
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _rows_referencing(plat: Platform, tenant_id: str) -> dict[str, int]:
    """Every table with a tenant_id column and the rows that still carry this id."""
    out: dict[str, int] = {}
    with plat.svc.db.reader() as s:
        insp = inspect(s.connection())
        for table in insp.get_table_names():
            if any(c["name"] == "tenant_id" for c in insp.get_columns(table)):
                n = s.scalar(
                    text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": tenant_id}
                )
                if n:
                    out[table] = int(n or 0)
    return out


def test_a_tenant_that_had_quotas_tokens_and_certificates_is_deleted(plat: Platform) -> None:
    t = _tenant(plat)
    r = plat.client.put("/v1/tenants/acme/quota", json={"cpu": 4, "cells": 10}, headers=plat.admin)
    assert r.status_code == 200, r.text
    now = time.time()
    with plat.svc.db.session() as s:
        s.add(RevokedToken(jti=new_id("jti"), tenant_id=t["id"], expires_at=now + 600))
        s.add(
            AuthCode(
                code_hash="c" * 64,
                tenant_id=t["id"],
                client_id="cli",
                user_id="u",
                redirect_uri="http://x/cb",
                code_challenge="x" * 43,
                created_at=now,
                expires_at=now + 60,
            )
        )
        s.add(
            IssuedCertificateRecord(
                serial="abc123",
                tenant_id=t["id"],
                subject="CN=u",
                profile="client",
                owner="user:u",
                not_after=utcnow() + dt.timedelta(days=1),
                created_at=utcnow(),
                revoked_at=utcnow(),
            )
        )
    r = plat.client.delete("/v1/tenants/acme", headers=plat.admin)
    assert r.status_code == 204, r.text
    assert plat.client.get("/v1/tenants/acme", headers=plat.admin).status_code == 404
    # Audit events are history: they keep the tenant id (no foreign key) and survive.
    leftovers = _rows_referencing(plat, t["id"])
    assert set(leftovers) <= {"audit_events", "tasks"}, leftovers
    with plat.svc.db.reader() as s:
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.action == "tenant.delete"))
    # The name is free again.
    _tenant(plat)


def test_a_tenant_with_volumes_is_refused_by_name(plat: Platform) -> None:
    t = _tenant(plat)
    with plat.svc.db.session() as s:
        project_id = s.scalar(text("SELECT id FROM projects WHERE tenant_id = :t"), {"t": t["id"]})
        s.add(
            Volume(
                id=new_id("vol"), project_id=project_id, name="data", size_gb=1, created_at=utcnow()
            )
        )
    r = plat.client.delete("/v1/tenants/acme", headers=plat.admin)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "1 volume (data)" in detail and "cellplane volume rm" in detail, detail
    assert "concurrent" not in detail
    assert plat.client.get("/v1/tenants/acme", headers=plat.admin).status_code == 200
