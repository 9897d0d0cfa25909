"""Clusters and the cluster catalog (BDE-style specs). A part of `cellplane.client.Client`.

Used by the CLI (`cellplane.cli.clusters`), the benchmark (`bench/cluster_deploy.py`) and
scripts. Cluster operations answer a task whose entity is the cluster; `wait_cluster` polls
the cluster view until that task ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from cellplane.client._base import BaseClient, JSONDict
from cellplane.client.errors import CellplaneError, CellplaneTimeoutError

__all__ = ["TERMINAL_CLUSTER_STATES", "ClustersApi"]

TERMINAL_CLUSTER_STATES = frozenset({"RUNNING", "PROVISION_ERROR", "STOPPED"})


class ClustersApi(BaseClient):
    """The cluster and catalog routes of the API."""

    def catalog_specs(self) -> list[JSONDict]:
        """The specs map: which distro and type each cluster spec is for."""
        return list(self._json("GET", "/v1/catalog/specs")["items"])

    def catalog_distros(self) -> list[JSONDict]:
        return list(self._json("GET", "/v1/catalog/distros")["items"])

    def catalog_roles(self) -> list[JSONDict]:
        return list(self._json("GET", "/v1/catalog/roles")["items"])

    def create_cluster(
        self,
        project: str,
        name: str,
        *,
        distro: str | None = None,
        type: str | None = None,
        spec: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Ask for a cluster; returns the task (its entity is the cluster)."""
        body: JSONDict = {"name": name}
        for key, value in (
            ("distro", distro),
            ("type", type),
            ("spec", spec),
            ("overrides", overrides),
        ):
            if value is not None:
                body[key] = value
        return self._json(
            "POST",
            f"/v1/projects/{project}/clusters",
            json_body=body,
            idempotency_key=idempotency_key,
        )

    def list_clusters(self, project: str) -> list[JSONDict]:
        return list(self._json("GET", f"/v1/projects/{project}/clusters")["items"])

    def find_cluster(self, project: str, name: str) -> JSONDict | None:
        """The cluster named `name`, or None (a name starting with `clu-` is taken as an id)."""
        if name.startswith("clu-"):
            return self.get_cluster(name)
        try:
            items = self._json("GET", f"/v1/projects/{project}/clusters", params=[("name", name)])
        except CellplaneError as exc:
            if exc.status == 404:
                return None
            raise
        found = items.get("items") or []
        return dict(found[0]) if found else None

    def get_cluster(self, cluster_id: str) -> JSONDict:
        return self._json("GET", f"/v1/clusters/{cluster_id}")

    def export_cluster(self, cluster_id: str) -> JSONDict:
        """The cluster's spec as it runs now (Serengeti's export form)."""
        return self._json("GET", f"/v1/clusters/{cluster_id}/export")

    def resize_cluster(self, cluster_id: str, node_group: str, instance_num: int) -> JSONDict:
        body = {"nodeGroup": node_group, "instanceNum": instance_num}
        return self._json("POST", f"/v1/clusters/{cluster_id}/resize", json_body=body)

    def stop_cluster(self, cluster_id: str) -> JSONDict:
        return self._json("POST", f"/v1/clusters/{cluster_id}/stop")

    def start_cluster(self, cluster_id: str) -> JSONDict:
        return self._json("POST", f"/v1/clusters/{cluster_id}/start")

    def resume_cluster(self, cluster_id: str) -> JSONDict:
        return self._json("POST", f"/v1/clusters/{cluster_id}/resume")

    def configure_cluster(self, cluster_id: str, configuration: Mapping[str, Any]) -> JSONDict:
        body = {"configuration": dict(configuration)}
        return self._json("POST", f"/v1/clusters/{cluster_id}/config", json_body=body)

    def delete_cluster(self, cluster_id: str, *, keep_volumes: bool = False) -> JSONDict:
        params = [("keepVolumes", "true")] if keep_volumes else None
        return self._json("DELETE", f"/v1/clusters/{cluster_id}", params=params)

    def wait_cluster(
        self,
        cluster_id: str,
        task_id: str,
        *,
        timeout: float | None = 600.0,
        interval: float = 0.25,
        on_change: Callable[[JSONDict], None] | None = None,
    ) -> JSONDict:
        """Poll the cluster until the task `task_id` ends; returns the last cluster view.

        A cluster that is deleted ends the wait with ``{"id": ..., "state": "DELETED"}``.
        `on_change` sees every view that differs from the previous one (progress displays).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JSONDict | None = None
        while True:
            try:
                view = self.get_cluster(cluster_id)
            except CellplaneError as exc:
                if exc.status == 404:
                    return {"id": cluster_id, "state": "DELETED", "task": {"state": "COMPLETED"}}
                raise
            if view != last:
                last = view
                if on_change is not None:
                    on_change(view)
            task = view.get("task") or {}
            if task.get("id") == task_id and task.get("state") in ("COMPLETED", "ERROR"):
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise CellplaneTimeoutError(
                    "Timed out", f"cluster {cluster_id} still {view['state']}"
                )
            time.sleep(interval)
