"""The agent protocol: register, heartbeat, long-poll assignments, report status.

Agents authenticate with a join token (once) and then with their host certificate (mutual TLS;
an agent of a plain-HTTP server: with the host token it was given).
Bodies are `cellplane.wire.agent` models (docs/agent-protocol.md), read only after the caller is
authenticated: an unauthenticated caller learns nothing about what a valid body looks like. A
body of another protocol version, or a malformed one, is a 422 problem naming the field.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from cellplane.api import models
from cellplane.api.deps import (
    agent_beat_token,
    agent_principal,
    agent_revision,
    agent_route,
    client_certificate,
    join_route,
    services,
)
from cellplane.api.jsonresp import JSONResponse
from cellplane.api.openapi import Tarball
from cellplane.services import hosts, images, networks
from cellplane.services.context import Services

__all__ = ["router"]

router = APIRouter(tags=["agent"])


@router.post(
    "/v1/agent/register",
    dependencies=[join_route],
    response_model=None,
    responses={200: {"model": models.RegisterAnswer, "description": "The host's id and token."}},
)
def register(
    request: Request, body: dict[str, Any], svc: Services = Depends(services)
) -> dict[str, Any]:
    # A host's own certificate admits it again without a join token (restart, rotation).
    cert = client_certificate(request)
    cert_host = cert.subject if cert is not None and cert.kind == "agent" else None
    return hosts.register(svc, body, cert_host).model_dump(mode="json", exclude_none=True)


@router.post(
    "/v1/agent/hosts/{host_id}/heartbeat",
    status_code=204,
    dependencies=[agent_route],
)
async def heartbeat(
    host_id: str,
    request: Request,
    body: dict[str, Any] | None = None,
    svc: Services = Depends(services),
) -> Response:
    # On the event loop: a beat whose token this process checked lately takes no thread and no
    # read; a thousand hosts beat 500 times a second (docs/scale.md, part 6).
    token = await agent_beat_token(request, host_id)
    if body is not None:  # agents of agent/v1 send one; an empty POST stays a heartbeat
        hosts.check_heartbeat(body)
    owed = hosts.beat(svc, host_id, token)
    if owed is None:
        return Response(status_code=204)
    if owed.before_answer:
        await run_in_threadpool(owed.write)
        return Response(status_code=204)
    # The batch is written after the answer: an agent whose beat found the batch due does not
    # wait for the write lock to beat again (its liveness is this process's memory meanwhile).
    return Response(status_code=204, background=BackgroundTask(owed.write))


@router.get(
    "/v1/agent/hosts/{host_id}/assignments",
    dependencies=[agent_route],
    response_model=None,
    responses={200: {"model": models.Assignments, "description": "What the host should run."}},
)
async def assignments(
    host_id: str,
    request: Request,
    revision: int = Query(default=0, ge=0),
    wait: float = Query(default=30.0, ge=0, le=300),
    svc: Services = Depends(services),
) -> JSONResponse:
    topic = f"host:{host_id}"
    seen = svc.notifier.version(topic)
    current = await run_in_threadpool(agent_revision, request, host_id)
    if 0 < revision == current and wait > 0:
        await svc.notifier.wait(topic, seen, wait)
    return await run_in_threadpool(_assignments, svc, host_id, revision)


def _assignments(svc: Services, host_id: str, revision: int) -> JSONResponse:
    # The answer is built as its JSON and rendered here, off the event loop: FastAPI's encoding
    # of a returned dict (`jsonable_encoder`) cost more than building it (docs/scale.md, part 5).
    return JSONResponse(hosts.assignments_answer(svc, host_id, revision))


@router.get(
    "/v1/agent/hosts/{host_id}/overlay",
    dependencies=[agent_route],
    response_model=None,
    responses={
        200: {
            "model": models.Overlay,
            "description": "The host's overlay networks: peer hosts and their cells.",
        }
    },
)
def overlay(host_id: str, request: Request, svc: Services = Depends(services)) -> dict[str, Any]:
    agent_principal(request, host_id)
    return networks.host_overlay(svc, host_id).model_dump(mode="json")


@router.post(
    "/v1/agent/hosts/{host_id}/status",
    status_code=204,
    dependencies=[agent_route],
)
def status(
    host_id: str, body: dict[str, Any], request: Request, svc: Services = Depends(services)
) -> Response:
    agent_principal(request, host_id)
    hosts.apply_status(svc, host_id, hosts.parse_status(body))
    return Response(status_code=204)


@router.get(
    "/v1/agent/hosts/{host_id}/images/{image_id}/content",
    dependencies=[agent_route],
    response_class=Tarball,
)
def image_content(
    host_id: str, image_id: str, request: Request, svc: Services = Depends(services)
) -> FileResponse:
    agent_principal(request, host_id)
    return FileResponse(images.image_content_path(svc, image_id), media_type="application/x-tar")
