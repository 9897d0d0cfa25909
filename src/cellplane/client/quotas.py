"""Quotas of tenants and projects: limits and usage. A part of `cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from cellplane.client._base import BaseClient, seg
from cellplane.client.models import Quota

__all__ = ["QuotasApi"]


class QuotasApi(BaseClient):
    """The `/v1/tenants/{tenant}/quota` and `/v1/projects/{project}/quota` routes."""

    def get_tenant_quota(self, tenant: str) -> Quota:
        return cast(Quota, self._json("GET", f"/v1/tenants/{seg(tenant)}/quota"))

    def set_tenant_quota(self, tenant: str, limits: Mapping[str, float | int | None]) -> Quota:
        """Replace a tenant's limits (system admins): a resource left out, or None, is unlimited."""
        path = f"/v1/tenants/{seg(tenant)}/quota"
        return cast(Quota, self._json("PUT", path, json_body=dict(limits)))

    def get_project_quota(self, project: str) -> Quota:
        return cast(Quota, self._json("GET", f"/v1/projects/{seg(project)}/quota"))

    def set_project_quota(self, project: str, limits: Mapping[str, float | int | None]) -> Quota:
        """Replace a project's limits: a resource left out, or None, is unlimited."""
        path = f"/v1/projects/{seg(project)}/quota"
        return cast(Quota, self._json("PUT", path, json_body=dict(limits)))
