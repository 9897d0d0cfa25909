"""Who the caller is, and the tenant's identity settings (LDAP federation, signing keys).

A part of `cellplane.client.Client`. Logging in (OAuth at `/identity/{tenant}`) is not a
method here: `cellplane.client.credentials` holds the token endpoint calls, and a
`Client(credentials=...)` renews its token by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from cellplane.client._base import BaseClient
from cellplane.client.models import KeyRotation, LdapSettings, Whoami

__all__ = ["IdentityApi"]


class IdentityApi(BaseClient):
    """The `/v1/whoami` and `/v1/identity/...` routes of the API."""

    def whoami(self) -> Whoami:
        """GET /v1/whoami: `{subject, name, tenant, roles, projects, kind}`."""
        return cast(Whoami, self._json("GET", "/v1/whoami"))

    def get_ldap(self) -> LdapSettings:
        """The tenant's LDAP federation (404 when it has none); the bind password is not shown."""
        return cast(LdapSettings, self._json("GET", "/v1/identity/ldap"))

    def set_ldap(self, settings: Mapping[str, Any], *, check: bool = True) -> LdapSettings:
        """Set the LDAP federation: `{url, bind_dn, bind_password, user_base, group_base, ...}`.

        With `check` the server binds and looks up both bases before saving.
        """
        body = {**dict(settings), "check": check}
        return cast(LdapSettings, self._json("PUT", "/v1/identity/ldap", json_body=body))

    def delete_ldap(self) -> None:
        """End the tenant's LDAP federation."""
        self._send("DELETE", "/v1/identity/ldap")

    def rotate_signing_key(self, *, idempotency_key: str | None = None) -> KeyRotation:
        """A new token signing key for the tenant; the old one verifies until its tokens expire."""
        data = self._json("POST", "/v1/identity/keys/rotate", idempotency_key=idempotency_key)
        return cast(KeyRotation, data)
