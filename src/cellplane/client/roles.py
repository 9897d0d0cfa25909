"""Role assignments: who holds which role, tenant-wide or in one project.

A part of `cellplane.client.Client`.
"""

from __future__ import annotations

from typing import Any, cast

from cellplane.client._base import BaseClient, seg
from cellplane.client.models import RoleAssignment

__all__ = ["RolesApi"]


class RolesApi(BaseClient):
    """The `/v1/role-assignments` routes of the API."""

    def list_role_assignments(self) -> list[RoleAssignment]:
        return [cast(RoleAssignment, a) for a in self._iter("/v1/role-assignments")]

    def assign_role(
        self,
        role: str,
        *,
        user: str | None = None,
        group: str | None = None,
        client: str | None = None,
        project: str | None = None,
        idempotency_key: str | None = None,
    ) -> RoleAssignment:
        """Assign `role` to one subject (a user, group or client, by name or id), tenant-wide
        or in `project`. The server refuses a request naming no subject or more than one."""
        body: dict[str, Any] = {"role": role}
        for kind, name in (("user", user), ("group", group), ("client", client)):
            if name:
                body[kind] = name
        if project:
            body["project"] = project
        data = self._json(
            "POST", "/v1/role-assignments", json_body=body, idempotency_key=idempotency_key
        )
        return cast(RoleAssignment, data)

    def revoke_role(self, assignment_id: str) -> None:
        """Remove a role assignment (`rol-...`)."""
        self._send("DELETE", f"/v1/role-assignments/{seg(assignment_id)}")
