"""The audit log. A part of `cellplane.client.Client`."""

from __future__ import annotations

from typing import cast

from cellplane.client._base import BaseClient
from cellplane.client.models import AuditPage

__all__ = ["AuditApi"]


class AuditApi(BaseClient):
    """The `/v1/audit` route of the API."""

    def list_audit(
        self,
        *,
        limit: int | None = None,
        before: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        actor: str | None = None,
        all_tenants: bool = False,
    ) -> AuditPage:
        """One page of audit events, newest first: `{items, next_cursor}` (the next page is
        `before=next_cursor`). `all_tenants` is for system admins."""
        params: list[tuple[str, str]] = []
        if limit is not None:
            params.append(("limit", str(limit)))
        for name, value in (
            ("before", before),
            ("action", action),
            ("outcome", outcome),
            ("actor", actor),
        ):
            if value:
                params.append((name, value))
        if all_tenants:
            params.append(("all_tenants", "true"))
        return cast(AuditPage, self._json("GET", "/v1/audit", params=params))
