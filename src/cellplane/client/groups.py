"""Groups of the caller's tenant and their members. A part of `cellplane.client.Client`."""

from __future__ import annotations

from typing import cast

from cellplane.client._base import BaseClient, seg
from cellplane.client.models import Group

__all__ = ["GroupsApi"]


class GroupsApi(BaseClient):
    """The group routes of the API."""

    def list_groups(self) -> list[Group]:
        return [cast(Group, g) for g in self._iter("/v1/groups")]

    def create_group(self, name: str, *, idempotency_key: str | None = None) -> Group:
        data = self._json(
            "POST", "/v1/groups", json_body={"name": name}, idempotency_key=idempotency_key
        )
        return cast(Group, data)

    def get_group(self, group: str) -> Group:
        """A group (by name or id) with its members."""
        return cast(Group, self._json("GET", f"/v1/groups/{seg(group)}"))

    def delete_group(self, group: str) -> None:
        """Delete a group (its role assignments go with it)."""
        self._send("DELETE", f"/v1/groups/{seg(group)}")

    def add_group_member(self, group: str, user: str) -> Group:
        """Add a user to a group (a PUT: adding a member twice is harmless); returns the group."""
        return cast(Group, self._json("PUT", f"/v1/groups/{seg(group)}/members/{seg(user)}"))

    def remove_group_member(self, group: str, user: str) -> Group:
        """Remove a user from a group; returns the group."""
        path = f"/v1/groups/{seg(group)}/members/{seg(user)}"
        return cast(Group, self._json("DELETE", path))
