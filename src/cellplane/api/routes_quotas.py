"""Quotas of tenants and projects: read by members, set by admins. Thin: authorise, call the service.

A tenant's quota is set by system admins only (`tenants:write`); a project's by its tenant's
admins (`quotas:write`). Callers see their own tenant only: another tenant's name answers 404,
except to a system admin on the tenant routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from cellplane.api import models
from cellplane.api.deps import require, services
from cellplane.services import quotas
from cellplane.services.context import Principal, Services

__all__ = ["PUBLIC_ROUTES", "router"]

router = APIRouter(tags=["quotas"])
PUBLIC_ROUTES: set[str] = set()
# `allocated` and `updated_at` are in some answers only: nothing is added to the others.
_QUOTA: dict[str, Any] = {"response_model": models.Quota, "response_model_exclude_unset": True}


@router.get("/v1/tenants/{tenant}/quota", **_QUOTA)
def get_tenant_quota(
    tenant: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("quotas:read")),
) -> dict[str, Any]:
    return quotas.get_quota(svc, p, tenant=tenant)


@router.put("/v1/tenants/{tenant}/quota", **_QUOTA)
def set_tenant_quota(
    tenant: str,
    body: quotas.QuotaLimits,
    svc: Services = Depends(services),
    p: Principal = Depends(require("tenants:write")),
) -> dict[str, Any]:
    return quotas.set_quota(svc, p, body, tenant=tenant)


@router.get("/v1/projects/{project}/quota", **_QUOTA)
def get_project_quota(
    project: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("quotas:read")),
) -> dict[str, Any]:
    return quotas.get_quota(svc, p, project=project)


@router.put("/v1/projects/{project}/quota", **_QUOTA)
def set_project_quota(
    project: str,
    body: quotas.QuotaLimits,
    svc: Services = Depends(services),
    p: Principal = Depends(require("quotas:write")),
) -> dict[str, Any]:
    return quotas.set_quota(svc, p, body, project=project)
