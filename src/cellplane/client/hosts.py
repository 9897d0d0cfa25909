"""Hosts: list, show, maintenance, revoke; join tokens (operators). A part of
`cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from cellplane.client._base import BaseClient, JSONDict, label_params

__all__ = ["HostsApi"]


class HostsApi(BaseClient):
    """The host routes of the API."""

    def list_hosts(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JSONDict:
        """One page of hosts: `{items, next_cursor}`."""
        return self._page("/v1/hosts", label_params(labels), limit, cursor)

    def iter_hosts(self, *, labels: Mapping[str, str] | None = None) -> Iterator[JSONDict]:
        """Every host, following `next_cursor`."""
        return self._iter("/v1/hosts", label_params(labels))

    def get_host(self, host_id: str) -> JSONDict:
        return self._json("GET", f"/v1/hosts/{host_id}")

    def set_maintenance(
        self, host_id: str, enabled: bool, *, idempotency_key: str | None = None
    ) -> JSONDict:
        """Put a host into (or out of) maintenance; returns the Host."""
        return self._json(
            "POST",
            f"/v1/hosts/{host_id}/maintenance",
            json_body={"enabled": enabled},
            idempotency_key=idempotency_key,
        )

    def revoke_host(self, host_id: str) -> JSONDict:
        """Revoke a host's certificates at once (its next request is refused); the Host."""
        return self._json("POST", f"/v1/hosts/{host_id}/revoke")

    def create_join_token(self, *, ttl_s: float | None = 3600.0, uses: int | None = 1) -> JSONDict:
        """A join token for agents (`token` is in this answer only); `ttl_s`/`uses` None: no
        expiry / no limit."""
        return self._json("POST", "/v1/join-tokens", json_body={"ttl_s": ttl_s, "uses": uses})

    def list_join_tokens(self) -> list[JSONDict]:
        """Every join token (without the tokens themselves)."""
        return list(self._json("GET", "/v1/join-tokens")["items"])

    def delete_join_token(self, token_id: str) -> None:
        self._send("DELETE", f"/v1/join-tokens/{token_id}")
