"""Developer API: cells and volumes of a project. Thin: parse, authorise, call the service."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.jsonresp import JSONResponse
from cellplane.api.openapi import PlainText, problem_response
from cellplane.api.respond import idempotent, outcome_response
from cellplane.errors import ValidationFailed
from cellplane.services import agent_proxy, cell_access, cells, moves, volumes
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome
from cellplane.services.schemas import CellCreate, MoveBody, StopBody, VolumeCreate
from cellplane.state.conflicts import retry_conflicts

__all__ = ["router"]

router = APIRouter(tags=["cells"])


def _labels(label: list[str]) -> dict[str, str]:
    out = {}
    for item in label:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValidationFailed.field("label", f"{item!r} is not key=value")
        out[k] = v
    return out


@router.post("/v1/projects/{project}/cells", status_code=202, response_model=models.Task)
def create_cell(
    project: str,
    body: CellCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: cells.create(svc, s, p, project, body))


@router.get("/v1/projects/{project}/cells", response_model=models.CellList)
def list_cells(
    project: str,
    label: list[str] = Query(default=[]),
    name: str | None = None,
    state: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = None,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> dict[str, Any]:
    return cells.list_cells(
        svc, p, project, labels=_labels(label), name=name, state=state, limit=limit, cursor=cursor
    )


@router.get("/v1/cells/{cell_id}", response_model=models.Cell)
def get_cell(
    cell_id: str, svc: Services = Depends(services), p: Principal = Depends(require("cells:read"))
) -> dict[str, Any]:
    return cells.get(svc, p, cell_id)


@router.post("/v1/cells/{cell_id}/start", status_code=202, response_model=models.Task)
def start_cell(
    cell_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: cells.start(svc, s, p, cell_id))


@router.post("/v1/cells/{cell_id}/stop", status_code=202, response_model=models.Task)
def stop_cell(
    cell_id: str,
    body: StopBody | None = Body(default=None),
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    timeout = body.timeout if body else None
    return idempotent(svc, p, ctx, lambda s: cells.stop(svc, s, p, cell_id, timeout))


@router.post("/v1/cells/{cell_id}/restart", status_code=202, response_model=models.Task)
def restart_cell(
    cell_id: str,
    body: StopBody | None = Body(default=None),
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    timeout = body.timeout if body else None
    return idempotent(svc, p, ctx, lambda s: cells.restart(svc, s, p, cell_id, timeout))


@router.post("/v1/cells/{cell_id}/move", status_code=202, response_model=models.Task)
def move_cell(
    cell_id: str,
    body: MoveBody,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    """Move the cell to another host: its container there is created anew (a new generation)
    and the old one removed. A cell whose volume lives on its host is refused (409)."""
    return idempotent(svc, p, ctx, lambda s: moves.move(svc, s, p, cell_id, body.host))


@router.delete("/v1/cells/{cell_id}", status_code=202, response_model=models.Task)
def delete_cell(
    cell_id: str, svc: Services = Depends(services), p: Principal = Depends(require("cells:write"))
) -> Response:

    def once() -> Outcome:
        with svc.db.session() as s:
            return cells.delete(svc, s, p, cell_id)

    out = retry_conflicts(once)  # rolled back by PostgreSQL for a conflict: nothing was written
    svc.notifier.publish(*out.topics)
    return outcome_response(out)


def _agent_client(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.agent_client
    return client


@router.get(
    "/v1/cells/{cell_id}/logs",
    response_class=PlainText,
    responses={
        409: problem_response(409, "The cell has no container, or its host's agent is unreachable.")
    },
)
async def cell_logs(
    cell_id: str,
    request: Request,
    tail: int | None = Query(default=None, ge=0, le=1_000_000),
    follow: bool = False,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:read")),
) -> StreamingResponse:
    target = await run_in_threadpool(cell_access.locate, svc, p, cell_id)
    chunks = await agent_proxy.open_logs(_agent_client(request), target, tail=tail, follow=follow)
    return StreamingResponse(chunks, media_type="text/plain; charset=utf-8")


class ExecBody(BaseModel):
    command: list[str] = Field(min_length=1, max_length=1024)
    timeout: float = Field(default=60, gt=0, le=3600)


@router.post("/v1/cells/{cell_id}/exec", response_model=models.ExecResult)
async def cell_exec(
    cell_id: str,
    body: ExecBody,
    request: Request,
    svc: Services = Depends(services),
    p: Principal = Depends(require("cells:write")),
) -> JSONResponse:
    target = await run_in_threadpool(
        cell_access.locate_exec, svc, p, cell_id, body.command, mode="run"
    )
    answer = await agent_proxy.exec_async(
        _agent_client(request), target, body.command, body.timeout
    )
    return JSONResponse(answer)


# --- volumes ---


@router.post(
    "/v1/projects/{project}/volumes",
    status_code=201,
    tags=["volumes"],
    response_model=models.Volume,
)
def create_volume(
    project: str,
    body: VolumeCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("volumes:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    return idempotent(svc, p, ctx, lambda s: volumes.create(svc, s, p, project, body))


@router.get("/v1/projects/{project}/volumes", tags=["volumes"], response_model=models.VolumeList)
def list_volumes(
    project: str, svc: Services = Depends(services), p: Principal = Depends(require("volumes:read"))
) -> dict[str, Any]:
    return volumes.list_volumes(svc, p, project)


@router.get("/v1/volumes/{volume_id}", tags=["volumes"], response_model=models.Volume)
def get_volume(
    volume_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("volumes:read")),
) -> dict[str, Any]:
    return volumes.get(svc, p, volume_id)


@router.delete("/v1/volumes/{volume_id}", status_code=204, tags=["volumes"])
def delete_volume(
    volume_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("volumes:write")),
) -> Response:
    volumes.delete(svc, p, volume_id)
    return Response(status_code=204)
