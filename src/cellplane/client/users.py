"""Users of the caller's tenant. A part of `cellplane.client.Client`."""

from __future__ import annotations

from typing import Any, cast

from cellplane.client._base import BaseClient, drop_none, seg
from cellplane.client.models import NewUser, User

__all__ = ["UsersApi"]


class UsersApi(BaseClient):
    """The user routes of the API."""

    def list_users(self) -> list[User]:
        return [cast(User, u) for u in self._iter("/v1/users")]

    def create_user(
        self,
        name: str,
        *,
        password: str | None = None,
        email: str | None = None,
        display_name: str | None = None,
        idempotency_key: str | None = None,
    ) -> NewUser:
        """Create a local user; without `password` the server generates one (returned once)."""
        body = drop_none(
            {"name": name, "password": password, "email": email, "display_name": display_name}
        )
        data = self._json("POST", "/v1/users", json_body=body, idempotency_key=idempotency_key)
        return cast(NewUser, data)

    def get_user(self, user: str) -> User:
        """A user by name or id."""
        return cast(User, self._json("GET", f"/v1/users/{seg(user)}"))

    def update_user(
        self,
        user: str,
        *,
        email: str | None = None,
        display_name: str | None = None,
        disabled: bool | None = None,
        unlock: bool = False,
        password: str | None = None,
    ) -> User:
        """Change what is given (None leaves a field alone); a new password ends their sessions."""
        body: dict[str, Any] = drop_none(
            {"email": email, "display_name": display_name, "disabled": disabled}
        )
        if unlock:
            body["unlock"] = True
        if password is not None:
            body["password"] = password
        return cast(User, self._json("PATCH", f"/v1/users/{seg(user)}", json_body=body))

    def delete_user(self, user: str) -> None:
        """Delete a user (their group memberships, roles and sessions go with them)."""
        self._send("DELETE", f"/v1/users/{seg(user)}")
