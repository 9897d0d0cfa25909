"""SDK functions for clusters, over a :class:`cellplane.client.Client`.

Used by the CLI (:mod:`cellplane.cli.clusters`), the benchmark and scripts. Each function sends
one request through the client's transport (same retries, Idempotency-Key on POSTs, and
CellplaneError on problem answers) and returns the decoded JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from cellplane.client import CellplaneError, CellplaneTimeoutError, Client

__all__ = [
    "TERMINAL_CLUSTER_STATES",
    "catalog_distros",
    "catalog_roles",
    "catalog_specs",
    "configure_cluster",
    "create_cluster",
    "delete_cluster",
    "export_cluster",
    "find_cluster",
    "get_cluster",
    "list_clusters",
    "resize_cluster",
    "resume_cluster",
    "start_cluster",
    "stop_cluster",
    "wait_cluster",
]

JSONDict = dict[str, Any]
TERMINAL_CLUSTER_STATES = frozenset({"RUNNING", "PROVISION_ERROR", "STOPPED"})


def _call(client: Client, method: str, path: str, **kwargs: Any) -> JSONDict:
    # The client's transport: retries, idempotency keys and problem documents as CellplaneError.
    return client._json(method, path, **kwargs)


def catalog_specs(client: Client) -> list[JSONDict]:
    return list(_call(client, "GET", "/v1/catalog/specs")["items"])


def catalog_distros(client: Client) -> list[JSONDict]:
    return list(_call(client, "GET", "/v1/catalog/distros")["items"])


def catalog_roles(client: Client) -> list[JSONDict]:
    return list(_call(client, "GET", "/v1/catalog/roles")["items"])


def create_cluster(
    client: Client,
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
    return _call(
        client,
        "POST",
        f"/v1/projects/{project}/clusters",
        json_body=body,
        idempotency_key=idempotency_key,
    )


def list_clusters(client: Client, project: str) -> list[JSONDict]:
    return list(_call(client, "GET", f"/v1/projects/{project}/clusters")["items"])


def find_cluster(client: Client, project: str, name: str) -> JSONDict | None:
    """The cluster named `name`, or None (a name starting with `clu-` is taken as an id)."""
    if name.startswith("clu-"):
        return get_cluster(client, name)
    try:
        items = _call(client, "GET", f"/v1/projects/{project}/clusters", params=[("name", name)])
    except CellplaneError as exc:
        if exc.status == 404:
            return None
        raise
    found = items.get("items") or []
    return dict(found[0]) if found else None


def get_cluster(client: Client, cluster_id: str) -> JSONDict:
    return _call(client, "GET", f"/v1/clusters/{cluster_id}")


def export_cluster(client: Client, cluster_id: str) -> JSONDict:
    return _call(client, "GET", f"/v1/clusters/{cluster_id}/export")


def resize_cluster(client: Client, cluster_id: str, node_group: str, instance_num: int) -> JSONDict:
    body = {"nodeGroup": node_group, "instanceNum": instance_num}
    return _call(client, "POST", f"/v1/clusters/{cluster_id}/resize", json_body=body)


def stop_cluster(client: Client, cluster_id: str) -> JSONDict:
    return _call(client, "POST", f"/v1/clusters/{cluster_id}/stop")


def start_cluster(client: Client, cluster_id: str) -> JSONDict:
    return _call(client, "POST", f"/v1/clusters/{cluster_id}/start")


def resume_cluster(client: Client, cluster_id: str) -> JSONDict:
    return _call(client, "POST", f"/v1/clusters/{cluster_id}/resume")


def configure_cluster(
    client: Client, cluster_id: str, configuration: Mapping[str, Any]
) -> JSONDict:
    body = {"configuration": dict(configuration)}
    return _call(client, "POST", f"/v1/clusters/{cluster_id}/config", json_body=body)


def delete_cluster(client: Client, cluster_id: str, *, keep_volumes: bool = False) -> JSONDict:
    params = [("keepVolumes", "true")] if keep_volumes else None
    return _call(client, "DELETE", f"/v1/clusters/{cluster_id}", params=params)


def wait_cluster(
    client: Client,
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
            view = get_cluster(client, cluster_id)
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
            raise CellplaneTimeoutError("Timed out", f"cluster {cluster_id} still {view['state']}")
        time.sleep(interval)
