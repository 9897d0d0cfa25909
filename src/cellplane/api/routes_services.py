"""Developer API: services, N identical cells from one template. Thin: parse, authorise, call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.respond import idempotent, outcome_response
from cellplane.services import cell_services
from cellplane.services.context import Principal, Services
from cellplane.services.service_schemas import ServiceCreate, ServiceScale, ServiceUpdate

__all__ = ["router"]

router = APIRouter(tags=["services"])


@router.post("/v1/projects/{project}/services", status_code=202, response_model=models.Task)
def create_service(
    project: str,
    body: ServiceCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    """Create a service and its `instances` cells, named `<service>-<n>`. The quota is checked
    for every cell at once: the whole request is refused (nothing is created) if one is over."""
    return idempotent(svc, p, ctx, lambda s: cell_services.create(svc, s, p, project, body))


@router.get("/v1/projects/{project}/services", response_model=models.ServiceList)
def list_services(
    project: str, svc: Services = Depends(services), p: Principal = Depends(require("cells:read"))
) -> dict[str, Any]:
    return cell_services.list_services(svc, p, project)


@router.get("/v1/projects/{project}/services/{service}", response_model=models.Service)
def get_service(
    project: str,
    service: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> dict[str, Any]:
    return cell_services.get(svc, p, project, service)


@router.post(
    "/v1/projects/{project}/services/{service}/scale", status_code=202, response_model=models.Task
)
def scale_service(
    project: str,
    service: str,
    body: ServiceScale,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    """Set the number of cells. Extra cells go at once (those not running first, then the
    highest numbers); new ones are admitted at once, their quota checked together."""
    return idempotent(
        svc, p, ctx, lambda s: cell_services.scale(svc, s, p, project, service, body.instances)
    )


@router.post(
    "/v1/projects/{project}/services/{service}/update", status_code=202, response_model=models.Task
)
def update_service(
    project: str,
    service: str,
    body: ServiceUpdate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    """Roll out a new template: cells of the new revision replace the old ones, never more than
    `max_unavailable` below `instances` running nor `max_surge` above it alive."""
    return idempotent(
        svc, p, ctx, lambda s: cell_services.update(svc, s, p, project, service, body)
    )


@router.delete(
    "/v1/projects/{project}/services/{service}", status_code=202, response_model=models.Task
)
def delete_service(
    project: str,
    service: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> Response:
    """Delete the service and all its cells."""
    with svc.db.session() as s:
        out = cell_services.delete(svc, s, p, project, service)
    svc.notifier.publish(*out.topics)
    return outcome_response(out)
