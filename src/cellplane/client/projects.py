"""Projects of the caller's tenant. A part of `cellplane.client.Client`."""

from __future__ import annotations

from collections.abc import Iterator

from cellplane.client._base import BaseClient, JSONDict, seg

__all__ = ["ProjectsApi"]


class ProjectsApi(BaseClient):
    """The project routes of the API."""

    def list_projects(self, *, limit: int | None = None, cursor: str | None = None) -> JSONDict:
        return self._page("/v1/projects", (), limit, cursor)

    def iter_projects(self) -> Iterator[JSONDict]:
        return self._iter("/v1/projects")

    def create_project(self, name: str, *, idempotency_key: str | None = None) -> JSONDict:
        return self._json(
            "POST", "/v1/projects", json_body={"name": name}, idempotency_key=idempotency_key
        )

    def update_project(self, project: str, *, isolation: str | None) -> JSONDict:
        """Set the project's minimum isolation class (`sandbox`; `standard` or None: none).
        Existing cells are not changed: those below it are listed in `cells_below_policy`."""
        body = {"isolation": isolation}
        return self._json("PATCH", f"/v1/projects/{seg(project)}", json_body=body)

    def delete_project(self, project: str) -> None:
        """Delete an empty project; 409 (`Conflict`) names what it still has."""
        self._send("DELETE", f"/v1/projects/{seg(project)}")
