"""Volume routes of a Docker-compatible endpoint: create, ls, inspect, rm, prune. A Docker volume
is a Cellplane volume of the endpoint's project (`cellplane volume ls`), and nothing else.
"""

from __future__ import annotations

import secrets
from typing import Any

import pydantic
from aiohttp import web

from cellplane.dockerapi import naming
from cellplane.dockerapi import resource_views as rv
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    flag,
    json_body,
    json_response,
    principal,
)
from cellplane.dockerapi.mapping import Refused
from cellplane.errors import NotFound
from cellplane.services import volumes
from cellplane.services.context import Principal
from cellplane.services.schemas import VolumeCreate

__all__ = ["project_volumes", "routes"]


def project_volumes(ctx: EndpointContext, p: Principal) -> list[dict[str, Any]]:
    """The project's volumes (their Cellplane views)."""
    items: list[dict[str, Any]] = volumes.list_volumes(ctx.svc, p, ctx.project_id)["items"]
    return items


def _named(ctx: EndpointContext, p: Principal, name: str) -> dict[str, Any]:
    for vol in project_volumes(ctx, p):
        if naming.same_name(name, vol["name"]):  # Compose's `project_data` is `project-data`
            return vol
    raise Refused(404, f"get {name}: no such volume")


def _sized(size_gb: int | None) -> dict[str, int]:
    return {} if size_gb is None else {"size_gb": size_gb}


def _view(ctx: EndpointContext, vol: dict[str, Any]) -> dict[str, Any]:
    return rv.volume_view(vol, ctx.project_name)


def _create(ctx: EndpointContext, p: Principal, body: Any) -> dict[str, Any]:
    given = rv.check_volume_create(body) or f"vol-{secrets.token_hex(6)}"
    name = naming.dns_name(given) or given
    try:
        size = rv.volume_size_gb(body)
        spec = VolumeCreate(name=name, labels=rv.body_labels(body), **_sized(size))
    except pydantic.ValidationError as exc:
        raise Refused(400, rv.create_refusal("volume", name, exc)) from exc
    for vol in project_volumes(ctx, p):
        if vol["name"] == name:  # as Docker: creating an existing volume gives it back
            return _view(ctx, vol)
    with ctx.svc.db.session() as s:
        out = volumes.create(ctx.svc, s, p, ctx.project_id, spec, docker_name=given)
    return _view(ctx, out.body)


async def create(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    body = await json_body(request)
    return json_response(await blocking(_create, ctx, p, body), status=201)


async def list_volumes(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    filters = rv.parse_resource_filters(request.query.get("filters"), "volume")
    items = await blocking(project_volumes, ctx, p)
    out = [_view(ctx, v) for v in items if rv.volume_matches(v, filters)]
    return json_response({"Volumes": out, "Warnings": []})


async def inspect(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    vol = await blocking(_named, ctx, p, request.match_info["name"])
    return json_response(_view(ctx, vol))


def _delete(ctx: EndpointContext, p: Principal, name: str, force: bool) -> None:
    try:
        vol = _named(ctx, p, name)
    except Refused:
        if force:
            return
        raise
    try:
        volumes.delete(ctx.svc, p, vol["id"])
    except NotFound:
        if not force:
            raise Refused(404, f"get {name}: no such volume") from None
        return


async def remove(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    force = flag(request, "force")
    await blocking(_delete, ctx, p, request.match_info["name"], force)
    return web.Response(status=204)


def _prune(ctx: EndpointContext, p: Principal, filters: dict[str, list[str]]) -> list[str]:
    deleted = []
    for vol in project_volumes(ctx, p):
        if vol.get("attached_to") or not rv.volume_matches(vol, filters):
            continue
        try:
            volumes.delete(ctx.svc, p, vol["id"])
        except NotFound:
            continue  # gone meanwhile
        deleted.append(str(vol["name"]))
    return deleted


async def prune(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    filters = rv.parse_resource_filters(request.query.get("filters"), "volume")
    # API 1.41 prunes every unused volume (`all` came with 1.42, there are no anonymous ones).
    filters.pop("all", None)
    deleted = await blocking(_prune, ctx, p, filters)
    # Cellplane knows a volume's size limit, not what its data takes: nothing to report.
    return json_response({"VolumesDeleted": deleted, "SpaceReclaimed": 0})


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/volumes/create", create),
        ("GET", "/volumes", list_volumes),
        ("POST", "/volumes/prune", prune),
        ("GET", "/volumes/{name}", inspect),
        ("DELETE", "/volumes/{name}", remove),
    ]
