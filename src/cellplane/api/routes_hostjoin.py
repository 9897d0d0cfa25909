"""Joining hosts: join tokens (`cellplane host token create|ls|rm`) and `host revoke`.

The token of a new join token is in the creation's answer only (kept hashed). Revoking a host
revokes its certificates at once: its next request is refused (401, naming the revocation).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from cellplane.api import models
from cellplane.api.deps import require, services
from cellplane.api.jsonresp import JSONResponse
from cellplane.services import host_join, hosts
from cellplane.services.context import Principal, Services
from cellplane.services.schemas import JoinTokenCreate

__all__ = ["router"]

router = APIRouter(tags=["hosts"])


@router.post("/v1/join-tokens", status_code=201, response_model=models.JoinTokenCreated)
def create_join_token(
    body: JoinTokenCreate,
    svc: Services = Depends(services),
    p: Principal = Depends(require("hosts:write")),
) -> JSONResponse:
    view = host_join.create_token(svc, p, body.ttl_s, body.uses)
    return JSONResponse(view, 201, headers={"Location": f"/v1/join-tokens/{view['id']}"})


@router.get("/v1/join-tokens", response_model=models.JoinTokenList)
def list_join_tokens(
    svc: Services = Depends(services), p: Principal = Depends(require("hosts:read"))
) -> dict[str, Any]:
    return {"items": host_join.list_tokens(svc), "next_cursor": None}


@router.delete("/v1/join-tokens/{token_id}", status_code=204)
def delete_join_token(
    token_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("hosts:write")),
) -> Response:
    host_join.delete_token(svc, p, token_id)
    return Response(status_code=204)


@router.post("/v1/hosts/{host_id}/revoke", response_model=models.Host)
def revoke_host(
    host_id: str,
    svc: Services = Depends(services),
    p: Principal = Depends(require("hosts:write")),
) -> dict[str, Any]:
    return hosts.get_host(svc, host_join.revoke_host(svc, p, host_id))
