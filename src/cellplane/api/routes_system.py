"""Health, readiness, metrics, the caller's identity and projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.openapi import PlainText, problem_response
from cellplane.api.respond import idempotent
from cellplane.metrics import REGISTRY
from cellplane.services import projects, system
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import IsolationPolicy, ProjectCreate

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["system"], response_model=models.Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["system"],
    response_model=models.Ready,
    responses={503: {"model": models.Ready, "description": "The database cannot be used."}},
)
def readyz(svc: Services = Depends(services)) -> Response:
    problem = system.database_problem(svc)
    if problem is not None:
        return Response(
            f'{{"status": "unavailable", "detail": "{problem}"}}',
            503,
            media_type="application/json",
        )
    return Response('{"status": "ready"}', 200, media_type="application/json")


@router.get("/metrics", tags=["system"], response_class=PlainText)
async def metrics() -> Response:
    data = await run_in_threadpool(generate_latest, REGISTRY)
    return Response(data, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/system/leader", tags=["system"], response_model=models.Leader)
def leader(
    svc: Services = Depends(services), p: Principal = Depends(require("hosts:read"))
) -> dict[str, Any]:
    """Which server replica runs the controllers, and under which epoch (docs/operations.md,
    "Several servers")."""
    return system.leader(svc)


@router.get("/v1/whoami", tags=["identity"], response_model=models.Whoami)
def whoami(p: Principal = Depends(require("self"))) -> dict[str, Any]:
    return {
        "subject": p.subject,
        "name": p.name,
        "tenant": p.tenant,
        "roles": list(p.roles),
        "projects": {pid: list(roles) for pid, roles in p.project_roles},
        "kind": p.kind,
    }


@router.get("/v1/projects", tags=["projects"], response_model=models.ProjectList)
def list_projects(
    svc: Services = Depends(services), p: Principal = Depends(require("projects:read"))
) -> dict[str, Any]:
    return projects.list_projects(svc, p)


@router.patch("/v1/projects/{project}", tags=["projects"], response_model=models.ProjectUpdated)
def update_project(
    project: str,
    body: IsolationPolicy,
    svc: Services = Depends(services),
    p: Principal = Depends(require("projects:write")),
) -> dict[str, Any]:
    """Set the project's minimum isolation class; existing cells below it are listed, unchanged."""
    return projects.update(svc, p, project, body)


@router.delete(
    "/v1/projects/{project}",
    status_code=204,
    tags=["projects"],
    responses={
        404: problem_response(404, "No such project in the caller's tenant."),
        409: problem_response(
            409,
            "The project still has clusters, services, cells, volumes, networks or a Docker "
            "endpoint (named in the detail), or it is the default project.",
        ),
    },
)
def delete_project(
    project: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("projects:write")),
) -> Response:
    """Delete an empty project (its default network, quota and role assignments go with it)."""
    projects.delete(svc, p, project)
    return Response(status_code=204)


@router.post("/v1/projects", status_code=201, tags=["projects"], response_model=models.Project)
def create_project(
    body: ProjectCreate,
    request: Request,
    svc: Services = Depends(services),
    p: Principal = Depends(require("projects:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: projects.create(svc, s, p, body))
