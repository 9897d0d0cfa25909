"""Tenants (system admins; a tenant admin sees their own). A part of `cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from cellplane.client._base import BaseClient, seg
from cellplane.client.models import Tenant, TenantCreated

__all__ = ["TenantsApi"]


class TenantsApi(BaseClient):
    """The tenant routes of the API."""

    def list_tenants(self) -> list[Tenant]:
        return [cast(Tenant, t) for t in self._iter("/v1/tenants")]

    def create_tenant(
        self,
        name: str,
        *,
        admin: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> TenantCreated:
        """Create a tenant with its `default` project and its first admin.

        `admin` is `{name, password?, email?}`; without a password the server generates one
        and returns it once, in `admin.password`.
        """
        body: dict[str, Any] = {"name": name}
        if admin is not None:
            body["admin"] = dict(admin)
        data = self._json("POST", "/v1/tenants", json_body=body, idempotency_key=idempotency_key)
        return cast(TenantCreated, data)

    def get_tenant(self, tenant: str) -> Tenant:
        """A tenant by name or id."""
        return cast(Tenant, self._json("GET", f"/v1/tenants/{seg(tenant)}"))

    def update_tenant(self, tenant: str, *, isolation: str | None) -> Tenant:
        """Set the tenant's minimum isolation class (`sandbox`; `standard` or None: no policy).
        Existing cells are not changed: those below it are listed in `cells_below_policy`."""
        body = {"isolation": isolation}
        return cast(Tenant, self._json("PATCH", f"/v1/tenants/{seg(tenant)}", json_body=body))

    def delete_tenant(self, tenant: str) -> None:
        """Delete a tenant (refused while it has cells, volumes or clusters)."""
        self._send("DELETE", f"/v1/tenants/{seg(tenant)}")
