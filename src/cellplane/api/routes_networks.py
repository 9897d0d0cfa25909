"""Developer API: a project's networks. Thin: parse, authorise, call the service."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.respond import idempotent
from cellplane.services import cells, network_attach, project_networks
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


# --- a cell's networks ---


class CellNetworkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    network: str = Field(min_length=1, max_length=63, description="A network of its project.")


async def _change(
    request: Request, svc: Services, p: Principal, cell_id: str, network: str, action: str
) -> dict[str, Any]:
    client: httpx.AsyncClient = request.app.state.agent_client
    network_id = await run_in_threadpool(network_attach.network_named, svc, p, cell_id, network)
    await network_attach.apply(svc, client, p, cell_id, network_id, action)
    return await run_in_threadpool(cells.get, svc, p, cell_id)


@router.post("/v1/cells/{cell_id}/networks", response_model=models.Cell)
async def connect_cell(
    cell_id: str,
    body: CellNetworkBody,
    request: Request,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> dict[str, Any]:
    """Put the cell on one more network of its project, at once (its container too)."""
    return await _change(request, svc, p, cell_id, body.network, "connect")


@router.delete("/v1/cells/{cell_id}/networks/{network}", response_model=models.Cell)
async def disconnect_cell(
    cell_id: str,
    network: str,
    request: Request,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> dict[str, Any]:
    """Take the cell off one of its networks (not its last one), at once."""
    return await _change(request, svc, p, cell_id, network, "disconnect")
