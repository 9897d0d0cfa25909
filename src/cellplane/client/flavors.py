"""Flavors: named cell sizes. A part of `cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Iterator

from cellplane.client._base import BaseClient, JSONDict

__all__ = ["FlavorsApi"]


class FlavorsApi(BaseClient):
    """The flavor routes of the API."""

    def list_flavors(self, *, limit: int | None = None, cursor: str | None = None) -> JSONDict:
        return self._page("/v1/flavors", (), limit, cursor)

    def iter_flavors(self) -> Iterator[JSONDict]:
        return self._iter("/v1/flavors")

    def get_flavor(self, name: str) -> JSONDict:
        return self._json("GET", f"/v1/flavors/{name}")

    def create_flavor(
        self,
        name: str,
        cpu: float,
        memory_mb: int,
        disk_gb: int,
        *,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        body = {"name": name, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}
        return self._json("POST", "/v1/flavors", json_body=body, idempotency_key=idempotency_key)

    def delete_flavor(self, name: str) -> None:
        self._send("DELETE", f"/v1/flavors/{name}")
