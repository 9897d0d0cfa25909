"""Developer API: a project's Docker-compatible endpoint (create, list, delete).

The listener itself is `cellplane.dockerapi`, in the server process; a change here wakes it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from cellplane.api import models
from cellplane.api.deps import require, services
from cellplane.api.jsonresp import JSONResponse
from cellplane.services import docker_endpoints
from cellplane.services.context import Principal, Services

__all__ = ["router"]

router = APIRouter(tags=["docker"])


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    port: int | None = Field(default=None, ge=1024, le=65535)


@router.post(
    "/v1/projects/{project}/docker-endpoints",
    status_code=201,
    response_model=models.DockerEndpoint,
)
def create_endpoint(
    project: str,
    body: EndpointCreate | None = Body(default=None),
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> JSONResponse:
    with svc.db.session() as s:
        view = docker_endpoints.create(svc, s, p, project, body.port if body else None)
    svc.notifier.publish(docker_endpoints.TOPIC)
    return JSONResponse(view, status_code=201)


@router.get("/v1/projects/{project}/docker-endpoints", response_model=models.DockerEndpointList)
def list_endpoints(
    project: str, svc: Services = Depends(services), p: Principal = Depends(require("cells:read"))
) -> dict[str, Any]:
    return docker_endpoints.list_endpoints(svc, p, project)


@router.delete("/v1/projects/{project}/docker-endpoints", status_code=204)
def delete_endpoint(
    project: str, svc: Services = Depends(services), p: Principal = Depends(require("cells:write"))
) -> Response:
    docker_endpoints.delete(svc, p, project)
    return Response(status_code=204)
