"""Developer API: clusters from Serengeti specs, and the catalog they come from.

Included by :func:`cellplane.api.app.create_app`. Thin: parse, authorise, call
:mod:`cellplane.services.clusters`; the executor in the same process does the work.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.respond import idempotent, outcome_response
from cellplane.services import cluster_views, clusters
from cellplane.services.clusters import ClusterCreate, ConfigBody, ResizeBody
from cellplane.services.context import Principal, Services

__all__ = ["router"]

router = APIRouter(tags=["clusters"])


@router.get("/v1/catalog/specs", response_model=models.CatalogSpecList)
def catalog_specs(p: Principal = Depends(require("cells:read"))) -> dict[str, Any]:
    return {"items": cluster_views.catalog_specs(), "next_cursor": None}


@router.get("/v1/catalog/distros", response_model=models.CatalogDistroList)
def catalog_distros(p: Principal = Depends(require("cells:read"))) -> dict[str, Any]:
    return {"items": cluster_views.catalog_distros(), "next_cursor": None}


@router.get("/v1/catalog/roles", response_model=models.CatalogRoleList)
def catalog_roles(p: Principal = Depends(require("cells:read"))) -> dict[str, Any]:
    return {"items": cluster_views.catalog_roles(), "next_cursor": None}


@router.post("/v1/projects/{project}/clusters", status_code=202, response_model=models.Task)
def create_cluster(
    project: str,
    body: ClusterCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: clusters.create(svc, s, p, project, body))


@router.get("/v1/projects/{project}/clusters", response_model=models.ClusterList)
def list_clusters(
    project: str,
    name: str | None = None,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> dict[str, Any]:
    if name:
        return {"items": [cluster_views.find(svc, p, project, name)], "next_cursor": None}
    return cluster_views.list_clusters(svc, p, project)


@router.get("/v1/clusters/{cluster_id}", response_model=models.Cluster)
def get_cluster(
    cluster_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> dict[str, Any]:
    return cluster_views.get(svc, p, cluster_id)


@router.get(
    "/v1/clusters/{cluster_id}/export",
    response_model=models.ClusterSpecDocument,
    response_model_exclude_unset=True,
)
def export_cluster(
    cluster_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> dict[str, Any]:
    return cluster_views.export(svc, p, cluster_id)


@router.post("/v1/clusters/{cluster_id}/resize", status_code=202, response_model=models.Task)
def resize_cluster(
    cluster_id: str,
    body: ResizeBody,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: clusters.resize(svc, s, p, cluster_id, body))


@router.post("/v1/clusters/{cluster_id}/stop", status_code=202, response_model=models.Task)
def stop_cluster(
    cluster_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: clusters.stop(svc, s, p, cluster_id))


@router.post("/v1/clusters/{cluster_id}/start", status_code=202, response_model=models.Task)
def start_cluster(
    cluster_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: clusters.start(svc, s, p, cluster_id))


@router.post("/v1/clusters/{cluster_id}/resume", status_code=202, response_model=models.Task)
def resume_cluster(
    cluster_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: clusters.resume(svc, s, p, cluster_id))


@router.post("/v1/clusters/{cluster_id}/config", status_code=202, response_model=models.Task)
def configure_cluster(
    cluster_id: str,
    body: ConfigBody,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: clusters.config(svc, s, p, cluster_id, body))


@router.delete("/v1/clusters/{cluster_id}", status_code=202, response_model=models.Task)
def delete_cluster(
    cluster_id: str,
    keep_volumes: bool = Query(default=False, alias="keepVolumes"),
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> Response:
    with svc.db.session() as s:
        out = clusters.delete(svc, s, p, cluster_id, keep_volumes)
    svc.notifier.publish(*out.topics)
    return outcome_response(out)
