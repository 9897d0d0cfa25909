"""Operator API: hosts, flavors, images, and tasks (with their SSE event stream)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse

from cellplane.api import models
from cellplane.api.deps import IdempotencyContext, idempotency, require, services
from cellplane.api.jsonresp import JSONResponse
from cellplane.api.openapi import EventStream, Tarball, problem_response
from cellplane.api.respond import idempotent
from cellplane.errors import UnsupportedMediaType, ValidationFailed
from cellplane.services import hosts, images, moves, tasks
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import FlavorCreate, MaintenanceBody
from cellplane.validation import IMAGE_NAME, IMAGE_NAME_MSG

__all__ = ["router"]

router = APIRouter()

#: The image upload's body: the archive itself, not JSON.
# What an image upload may say it is (the engines load plain and compressed tarballs).
_TARBALL_TYPES = frozenset(
    {"application/x-tar", "application/octet-stream", "application/gzip", "application/x-gzip"}
)
_TARBALL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A docker-archive or OCI archive (tar).",
        "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("/v1/hosts", tags=["hosts"], response_model=models.HostList)
def list_hosts(
    svc: Services = Depends(services), p: Principal = Depends(require("hosts:read"))
) -> dict[str, Any]:
    return {"items": hosts.list_hosts(svc), "next_cursor": None}


@router.get("/v1/hosts/{host_id}", tags=["hosts"], response_model=models.Host)
def get_host(
    host_id: str, svc: Services = Depends(services), p: Principal = Depends(require("hosts:read"))
) -> dict[str, Any]:
    return hosts.get_host(svc, host_id)


@router.post("/v1/hosts/{host_id}/maintenance", tags=["hosts"], response_model=models.Host)
def maintenance(
    host_id: str,
    body: MaintenanceBody,
    svc: Services = Depends(services),
    p: Principal = Depends(require("hosts:write")),
) -> dict[str, Any]:
    return hosts.set_maintenance(svc, host_id, body.enabled)


@router.post(
    "/v1/hosts/{host_id}/drain", status_code=202, tags=["hosts"], response_model=models.Task
)
def drain(
    host_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("hosts:write")),
    ctx: IdempotencyContext = Depends(idempotency),
) -> Response:
    """MAINTENANCE, then every movable cell is rescheduled on other hosts; the DRAIN_HOST task
    has one step per cell (`cellplane task watch` shows the progress)."""
    return idempotent(svc, p, ctx, lambda s: moves.drain(svc, s, p, host_id))


@router.get("/v1/flavors", tags=["flavors"], response_model=models.FlavorList)
def list_flavors(
    svc: Services = Depends(services), p: Principal = Depends(require("flavors:read"))
) -> dict[str, Any]:
    return {"items": images.list_flavors(svc), "next_cursor": None}


@router.post("/v1/flavors", status_code=201, tags=["flavors"], response_model=models.Flavor)
def create_flavor(
    body: FlavorCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("flavors:write")),
) -> JSONResponse:
    view = images.create_flavor(svc, body)
    return JSONResponse(view, 201, headers={"Location": f"/v1/flavors/{body.name}"})


@router.get("/v1/flavors/{name}", tags=["flavors"], response_model=models.Flavor)
def get_flavor(
    name: str, svc: Services = Depends(services), p: Principal = Depends(require("flavors:read"))
) -> dict[str, Any]:
    return images.get_flavor(svc, name)


@router.delete("/v1/flavors/{name}", status_code=204, tags=["flavors"])
def delete_flavor(
    name: str, svc: Services = Depends(services), p: Principal = Depends(require("flavors:write"))
) -> Response:
    images.delete_flavor(svc, name)
    return Response(status_code=204)


@router.get("/v1/images", tags=["images"], response_model=models.ImageList)
def list_images(
    svc: Services = Depends(services), p: Principal = Depends(require("images:read"))
) -> dict[str, Any]:
    return {"items": images.list_images(svc), "next_cursor": None}


@router.post(
    "/v1/images",
    status_code=201,
    tags=["images"],
    response_model=models.Image,
    openapi_extra=_TARBALL_BODY,
    responses={
        413: problem_response(413, "The image is larger than this server's limit."),
        415: problem_response(415, "The body says it is not a tarball (its Content-Type)."),
    },
)
async def import_image(
    request: Request,
    name: str = Query(min_length=1, max_length=128),
    svc: Services = Depends(services),
    p: Principal = Depends(require("images:write")),
) -> JSONResponse:
    """Upload a docker-archive or OCI archive tarball as the raw request body."""
    if not IMAGE_NAME.fullmatch(name):  # before the upload, not after gigabytes of it
        raise ValidationFailed.field("name", IMAGE_NAME_MSG)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media not in _TARBALL_TYPES:
        raise UnsupportedMediaType(
            f"an image is uploaded as a tarball (application/x-tar), not {media}"
        )
    declared = request.headers.get("content-length", "")
    upload, sha256, size = await images.save_upload(svc, request.stream(), declared)
    view = await run_in_threadpool(images.import_image, svc, name, upload, sha256, size)
    return JSONResponse(view, 201, headers={"Location": f"/v1/images/{view['id']}"})


@router.get("/v1/images/{ref}", tags=["images"], response_model=models.Image)
def get_image(
    ref: str, svc: Services = Depends(services), p: Principal = Depends(require("images:read"))
) -> dict[str, Any]:
    return images.get_image(svc, ref)


@router.get("/v1/images/{ref}/content", tags=["images"], response_class=Tarball)
def image_content(
    ref: str, svc: Services = Depends(services), p: Principal = Depends(require("images:read"))
) -> FileResponse:
    return FileResponse(images.image_content_path(svc, ref), media_type="application/x-tar")


@router.delete("/v1/images/{ref}", status_code=204, tags=["images"])
def delete_image(
    ref: str, svc: Services = Depends(services), p: Principal = Depends(require("images:write"))
) -> Response:
    images.delete_image(svc, ref)
    return Response(status_code=204)


@router.get("/v1/projects/{project}/tasks", tags=["tasks"], response_model=models.TaskList)
def list_tasks(
    project: str,
    limit: int = Query(20, ge=1, le=200, description="How many tasks, newest first."),
    svc: Services = Depends(services),
    p: Principal = Depends(require("tasks:read")),
) -> dict[str, Any]:
    """The project's most recent tasks, newest first."""
    return tasks.list_tasks(svc, p, project, limit)


@router.get("/v1/tasks/{task_id}", tags=["tasks"], response_model=models.Task)
def get_task(
    task_id: str, svc: Services = Depends(services), p: Principal = Depends(require("tasks:read"))
) -> dict[str, Any]:
    return tasks.visible_task(svc, p, task_id)


# One event of the stream (what an SSE parser yields): `event: task`, the task as JSON in `data`;
# keep-alive comments are not events.
_TASK_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string", "enum": ["task"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/Task"},
        },
    },
}


@router.get(
    "/v1/tasks/{task_id}/events",
    tags=["tasks"],
    response_class=EventStream,
    responses={200: {"content": {"text/event-stream": {"schema": _TASK_EVENT}}}},
)
async def task_events(
    task_id: str, svc: Services = Depends(services), p: Principal = Depends(require("tasks:read"))
) -> StreamingResponse:
    """Server-sent events: the task as JSON on every change, ending after a terminal state."""
    first = await run_in_threadpool(tasks.visible_task, svc, p, task_id)
    topic = f"task:{task_id}"

    async def stream() -> AsyncIterator[str]:
        seen = svc.notifier.version(topic)
        view = first
        last = None
        while True:
            body = json.dumps(view)
            if body != last:
                yield f"event: task\ndata: {body}\n\n"
                last = body
            if view["state"] in tasks.TERMINAL:
                return
            new = await svc.notifier.wait(topic, seen, 5.0)
            if new == seen:
                yield ": keep-alive\n\n"
            seen = new
            view = await run_in_threadpool(tasks.visible_task, svc, p, task_id)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
