"""Hosts: list, show, maintenance (operators). A part of `cellplane.client.Client`."""

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

    def drain_host(self, host_id: str, *, idempotency_key: str | None = None) -> JSONDict:
        """Maintenance, and every movable cell moved away; returns the DRAIN_HOST task."""
        return self._json("POST", f"/v1/hosts/{host_id}/drain", idempotency_key=idempotency_key)
