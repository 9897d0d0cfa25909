"""OAuth clients of the caller's tenant (service accounts are confidential clients).

A part of `cellplane.client.Client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from cellplane.client._base import BaseClient, seg
from cellplane.client.models import OAuthClient

__all__ = ["OAuthClientsApi"]


class OAuthClientsApi(BaseClient):
    """The `/v1/clients` routes of the API."""

    def list_oauth_clients(self) -> list[OAuthClient]:
        return [cast(OAuthClient, c) for c in self._iter("/v1/clients")]

    def create_oauth_client(
        self,
        name: str,
        *,
        public: bool = False,
        grant_types: Sequence[str] | None = None,
        redirect_uris: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> OAuthClient:
        """Create an OAuth client; a confidential one gets a secret, returned only here."""
        body: dict[str, Any] = {
            "name": name,
            "public": public,
            "redirect_uris": list(redirect_uris),
        }
        if grant_types:
            body["grant_types"] = list(grant_types)
        data = self._json("POST", "/v1/clients", json_body=body, idempotency_key=idempotency_key)
        return cast(OAuthClient, data)

    def get_oauth_client(self, client: str) -> OAuthClient:
        """An OAuth client by name or client id."""
        return cast(OAuthClient, self._json("GET", f"/v1/clients/{seg(client)}"))

    def rotate_oauth_client_secret(
        self, client: str, *, idempotency_key: str | None = None
    ) -> OAuthClient:
        """A new secret for a confidential client (the old one stops working at once)."""
        data = self._json(
            "POST", f"/v1/clients/{seg(client)}/secret", idempotency_key=idempotency_key
        )
        return cast(OAuthClient, data)

    def delete_oauth_client(self, client: str) -> None:
        """Delete an OAuth client (its roles and refresh tokens go with it)."""
        self._send("DELETE", f"/v1/clients/{seg(client)}")
