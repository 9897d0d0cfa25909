"""Networks of a project. A part of `cellplane.client.Client`."""

from __future__ import annotations

from cellplane.client._base import BaseClient, JSONDict, seg

__all__ = ["NetworksApi"]


class NetworksApi(BaseClient):
    """The network routes of the API. A project's own network is called "default"."""

    def create_network(
        self,
        project: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        return self._json(
            "POST",
            f"/v1/projects/{seg(project)}/networks",
            json_body={"name": name, **({"labels": labels} if labels else {})},
            idempotency_key=idempotency_key,
        )

    def list_networks(self, project: str) -> JSONDict:
        return self._json("GET", f"/v1/projects/{seg(project)}/networks")

    def get_network(self, project: str, name: str) -> JSONDict:
        return self._json("GET", f"/v1/projects/{seg(project)}/networks/{seg(name)}")

    def delete_network(self, project: str, name: str) -> None:
        self._send("DELETE", f"/v1/projects/{seg(project)}/networks/{seg(name)}")

    def connect_cell_network(self, cell_id: str, network: str) -> JSONDict:
        """Put the cell on one more network of its project (its container too); the cell."""
        return self._json(
            "POST", f"/v1/cells/{seg(cell_id)}/networks", json_body={"network": network}
        )

    def disconnect_cell_network(self, cell_id: str, network: str) -> JSONDict:
        """Take the cell off one of its networks (not its last one); the cell."""
        return self._json("DELETE", f"/v1/cells/{seg(cell_id)}/networks/{seg(network)}")
