"""Volumes of a project. A part of `cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Iterator

from cellplane.client._base import BaseClient, JSONDict, drop_none

__all__ = ["VolumesApi"]


class VolumesApi(BaseClient):
    """The volume routes of the API."""

    def create_volume(
        self,
        project: str,
        name: str,
        *,
        size_gb: int | None = None,
        labels: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        return self._json(
            "POST",
            f"/v1/projects/{project}/volumes",
            json_body=drop_none({"name": name, "size_gb": size_gb, "labels": labels or None}),
            idempotency_key=idempotency_key,
        )

    def list_volumes(
        self,
        project: str,
        *,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JSONDict:
        query = [("name", name)] if name else []
        return self._page(f"/v1/projects/{project}/volumes", query, limit, cursor)

    def iter_volumes(self, project: str, *, name: str | None = None) -> Iterator[JSONDict]:
        query = [("name", name)] if name else []
        return self._iter(f"/v1/projects/{project}/volumes", query)

    def find_volume(self, project: str, name: str) -> JSONDict | None:
        """The volume called `name` in `project`, or None."""
        return next(
            (v for v in self.iter_volumes(project, name=name) if v.get("name") == name), None
        )

    def get_volume(self, volume_id: str) -> JSONDict:
        return self._json("GET", f"/v1/volumes/{volume_id}")

    def delete_volume(self, volume_id: str) -> None:
        self._send("DELETE", f"/v1/volumes/{volume_id}")
