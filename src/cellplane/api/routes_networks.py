"""Developer API: a project's networks. Thin: parse, authorise, call the service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.respond import idempotent
from cellplane.services import project_networks
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import NetworkCreate

__all__ = ["router"]

router = APIRouter(tags=["networks"])


@router.post("/v1/projects/{project}/networks", status_code=201, response_model=models.Network)
def create_network(
    project: str,
    body: NetworkCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: project_networks.create(s, p, project, body))


@router.get("/v1/projects/{project}/networks", response_model=models.NetworkList)
def list_networks(
    project: str, svc: Services = Depends(services), p: Principal = Depends(require("cells:read"))
) -> dict[str, Any]:
    return project_networks.list_networks(svc, p, project)


@router.get("/v1/projects/{project}/networks/{network}", response_model=models.Network)
def get_network(
    project: str,
    network: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> dict[str, Any]:
    return project_networks.get(svc, p, project, network)


@router.delete("/v1/projects/{project}/networks/{network}", status_code=204)
def delete_network(
    project: str,
    network: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> Response:
    project_networks.delete(svc, p, project, network)
    return Response(status_code=204)
