"""What the portal's pages show and change: calls into `services/`, with the caller's Principal.

The portal calls the services directly, as `api/` does, rather than the REST API through the SDK:
both run in the server process, so a page costs no HTTP round trip to itself, no JSON encoding
and decoding of every row, and no second authentication; the RBAC checks that live in the
services apply unchanged. The permission each REST route declares (`require(...)` in api/) is
checked here the same way, with `needs`, before a service that does not check it itself.
Every function is synchronous (database work): the routes run them in the thread pool.
"""

from __future__ import annotations

from typing import Any

from cellplane.errors import Forbidden, ValidationFailed
from cellplane.services import (
    cells,
    cluster_views,
    clusters,
    hosts,
    images,
    projects,
    quotas,
    tasks,
    volumes,
)
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome, body_hash
from cellplane.services.idempotency import run as run_once
from cellplane.services.schemas import CellCreate, VolumeCreate

__all__ = [
    "RESOURCES",
    "cell",
    "cell_action",
    "cell_page",
    "cluster",
    "cluster_action",
    "cluster_list",
    "cluster_spec",
    "create_cell",
    "create_cluster",
    "create_volume",
    "dashboard",
    "delete_cluster",
    "delete_volume",
    "distros",
    "host_list",
    "needs",
    "project_names",
    "quota",
    "resize_cluster",
    "set_maintenance",
    "set_quota",
    "task_list",
    "volume",
    "volume_list",
    "wizard_choices",
]

#: Quota resources, in the order the bars show them: (key, label, unit).
RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("cpu", "CPU", "cores"),
    ("memory_mb", "Memory", "MB"),
    ("disk_gb", "Disk", "GB"),
    ("cells", "Cells", ""),
    ("volumes_gb", "Volumes", "GB"),
)
PAGE = 100


def needs(p: Principal, permission: str) -> None:
    """The route check of api/deps.require: Forbidden without the permission anywhere."""
    if not p.can(permission):
        raise Forbidden(f"this needs the {permission!r} permission")


def project_names(svc: Services, p: Principal) -> list[str]:
    if not p.can("projects:read"):
        return []
    return [str(item["name"]) for item in projects.list_projects(svc, p)["items"]]


def bars(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Quota bars of a quota view: used, limit (None: none) and percent (0-100, None)."""
    out = []
    for key, label, unit in RESOURCES:
        used = view["usage"].get(key, 0) or 0
        limit = view["limits"].get(key)
        pct = None
        if limit:
            pct = max(0, min(100, round(100 * used / limit)))
        elif limit == 0:
            pct = 100 if used else 0
        out.append(
            {"key": key, "label": label, "unit": unit, "used": used, "limit": limit, "pct": pct}
        )
    return out


def quota(svc: Services, p: Principal, project: str) -> dict[str, Any]:
    needs(p, "quotas:read")
    view = quotas.get_quota(svc, p, project=project)
    return {"view": view, "bars": bars(view)}


def dashboard(svc: Services, p: Principal, project: str) -> dict[str, Any]:
    needs(p, "quotas:read")
    needs(p, "tasks:read")
    view = quotas.get_quota(svc, p, project=project)
    recent = tasks.list_tasks(svc, p, project, 10)["items"]
    return {"bars": bars(view), "tasks": recent}


def cell_page(
    svc: Services,
    p: Principal,
    project: str,
    *,
    state: str | None,
    name: str | None,
    cursor: str | None,
) -> dict[str, Any]:
    needs(p, "cells:read")
    return cells.list_cells(
        svc, p, project, labels={}, name=name, state=state, limit=PAGE, cursor=cursor
    )


def cell(svc: Services, p: Principal, cell_id: str) -> dict[str, Any]:
    needs(p, "cells:read")
    return cells.get(svc, p, cell_id)


def wizard_choices(svc: Services, p: Principal) -> dict[str, Any]:
    flavors = images.list_flavors(svc) if p.can("flavors:read") else []
    imgs = images.list_images(svc) if p.can("images:read") else []
    refs = sorted({ref for i in imgs for ref in (i.get("refs") or [i["name"]])})
    return {"flavors": flavors, "images": refs}


def create_cell(
    svc: Services, p: Principal, project: str, body: CellCreate, key: str
) -> dict[str, Any]:
    """Create the cell once per wizard form (`key`, a random idempotency key in the form): a
    second submit of the same form answers the first task instead of a second cell."""
    needs(p, "cells:write")
    path = f"/v1/projects/{project}/cells"
    fingerprint = body_hash("POST", path, body.model_dump_json().encode())

    def go(s: Any) -> Outcome:
        return cells.create(svc, s, p, project, body)

    out = run_once(svc, p, f"portal:{key}", fingerprint, "POST", path, go)
    return dict(out.body or {})


CELL_ACTIONS = ("start", "stop", "restart", "delete")


def cell_action(svc: Services, p: Principal, cell_id: str, action: str) -> dict[str, Any]:
    """Start, stop, restart or delete a cell (the services check the project role)."""
    needs(p, "cells:write")
    if action not in CELL_ACTIONS:
        raise ValidationFailed.field("action", f"must be one of {', '.join(CELL_ACTIONS)}")
    with svc.db.session() as s:
        if action == "start":
            out = cells.start(svc, s, p, cell_id)
        elif action == "stop":
            out = cells.stop(svc, s, p, cell_id, None)
        elif action == "restart":
            out = cells.restart(svc, s, p, cell_id, None)
        else:
            out = cells.delete(svc, s, p, cell_id)
    svc.notifier.publish(*out.topics)
    return dict(out.body or {})


def distros(p: Principal) -> list[dict[str, Any]]:
    """The catalog's distros with whether each can be deployed here and, if not, why."""
    needs(p, "cells:read")
    return cluster_views.catalog_distros()


def cluster_list(svc: Services, p: Principal, project: str) -> list[dict[str, Any]]:
    needs(p, "cells:read")
    items: list[dict[str, Any]] = cluster_views.list_clusters(svc, p, project)["items"]
    return items


def cluster(svc: Services, p: Principal, cluster_id: str) -> dict[str, Any]:
    needs(p, "cells:read")
    return cluster_views.get(svc, p, cluster_id)


def create_cluster(
    svc: Services, p: Principal, project: str, body: clusters.ClusterCreate, key: str
) -> dict[str, Any]:
    """Create a cluster once per form (`key`), as `create_cell`."""
    needs(p, "cells:write")
    path = f"/v1/projects/{project}/clusters"
    fingerprint = body_hash("POST", path, body.model_dump_json().encode())

    def go(s: Any) -> Outcome:
        return clusters.create(svc, s, p, project, body)

    return dict(run_once(svc, p, f"portal:{key}", fingerprint, "POST", path, go).body or {})


CLUSTER_ACTIONS = ("stop", "start")


def cluster_action(svc: Services, p: Principal, cluster_id: str, action: str) -> dict[str, Any]:
    """Stop or start a cluster (every node's cell, in the plan's order)."""
    needs(p, "cells:write")
    if action not in CLUSTER_ACTIONS:
        raise ValidationFailed.field("action", f"must be one of {', '.join(CLUSTER_ACTIONS)}")
    with svc.db.session() as s:
        fn = clusters.stop if action == "stop" else clusters.start
        out = fn(svc, s, p, cluster_id)
    svc.notifier.publish(*out.topics)
    return dict(out.body or {})


def resize_cluster(
    svc: Services, p: Principal, cluster_id: str, body: clusters.ResizeBody
) -> dict[str, Any]:
    needs(p, "cells:write")
    with svc.db.session() as s:
        out = clusters.resize(svc, s, p, cluster_id, body)
    svc.notifier.publish(*out.topics)
    return dict(out.body or {})


def delete_cluster(
    svc: Services, p: Principal, cluster_id: str, keep_volumes: bool
) -> dict[str, Any]:
    needs(p, "cells:write")
    with svc.db.session() as s:
        out = clusters.delete(svc, s, p, cluster_id, keep_volumes)
    svc.notifier.publish(*out.topics)
    return dict(out.body or {})


def cluster_spec(svc: Services, p: Principal, cluster_id: str) -> dict[str, Any]:
    """The cluster's spec as `cellplane cluster export` writes it (a Serengeti spec)."""
    needs(p, "cells:read")
    return cluster_views.export(svc, p, cluster_id)


def task_list(svc: Services, p: Principal, project: str, state: str | None) -> list[dict[str, Any]]:
    """The project's most recent 200 tasks (of one state when given), newest first."""
    needs(p, "tasks:read")
    items: list[dict[str, Any]] = tasks.list_tasks(svc, p, project, 200, state=state)["items"]
    return items


def volume(svc: Services, p: Principal, volume_id: str) -> dict[str, Any]:
    needs(p, "volumes:read")
    return volumes.get(svc, p, volume_id)


def volume_list(svc: Services, p: Principal, project: str) -> list[dict[str, Any]]:
    needs(p, "volumes:read")
    items: list[dict[str, Any]] = volumes.list_volumes(svc, p, project)["items"]
    return items


def create_volume(svc: Services, p: Principal, project: str, body: VolumeCreate) -> None:
    """Create a volume (a name taken answers Conflict, as the API's 409)."""
    needs(p, "volumes:write")
    with svc.db.session() as s:
        volumes.create(svc, s, p, project, body)


def delete_volume(svc: Services, p: Principal, volume_id: str) -> None:
    needs(p, "volumes:write")
    volumes.delete(svc, p, volume_id)


def host_list(svc: Services, p: Principal) -> list[dict[str, Any]]:
    needs(p, "hosts:read")
    return hosts.list_hosts(svc)


def set_maintenance(svc: Services, p: Principal, host_id: str, enabled: bool) -> dict[str, Any]:
    needs(p, "hosts:write")
    return hosts.set_maintenance(svc, host_id, enabled)


def set_quota(
    svc: Services, p: Principal, project: str, limits: quotas.QuotaLimits
) -> dict[str, Any]:
    needs(p, "quotas:write")
    return quotas.set_quota(svc, p, limits, project=project)
