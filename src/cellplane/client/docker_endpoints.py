"""A project's Docker-compatible endpoint. A part of `cellplane.client.Client`."""

from __future__ import annotations

from cellplane.client._base import BaseClient, JSONDict

__all__ = ["DockerEndpointsApi"]


class DockerEndpointsApi(BaseClient):
    """The `/v1/projects/{project}/docker-endpoints` routes of the API."""

    def create_docker_endpoint(self, project: str, *, port: int | None = None) -> JSONDict:
        """Open the project's endpoint (on `port`, or one the server picks): its view, with
        `docker_host` (`tcp://HOST:PORT`)."""
        body: dict[str, object] = {} if port is None else {"port": port}
        return self._json("POST", f"/v1/projects/{project}/docker-endpoints", json_body=body)

    def list_docker_endpoints(self, project: str) -> list[JSONDict]:
        data = self._json("GET", f"/v1/projects/{project}/docker-endpoints")
        return list(data.get("items") or [])

    def delete_docker_endpoint(self, project: str) -> None:
        """Close the project's endpoint; its containers (cells) stay."""
        self._send("DELETE", f"/v1/projects/{project}/docker-endpoints")
