"""Network routes of a Docker-compatible endpoint: create, ls, inspect, rm, prune, connect,
disconnect. A Docker network is a Cellplane network of the endpoint's project (`cellplane network
ls`); the project's default network is Docker's "bridge". Connect and disconnect: `netconnect`.
"""

from __future__ import annotations

from typing import Any

import pydantic
from aiohttp import web

from cellplane.dockerapi import netconnect
from cellplane.dockerapi import resource_views as rv
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    json_body,
    json_response,
    principal,
)
from cellplane.dockerapi.mapping import Refused
from cellplane.errors import Conflict, NotFound
from cellplane.services import docker_resources, project_networks
from cellplane.services.context import Principal
from cellplane.services.schemas import NetworkCreate

__all__ = ["routes"]


def _networks(
    ctx: EndpointContext, p: Principal
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The project's networks (Cellplane views) with the cells on each."""
    nets = project_networks.list_networks(ctx.svc, p, ctx.project_id)["items"]
    members = docker_resources.cells_by_network(ctx.svc, ctx.project_id)
    return [(n, members.get(n["id"], [])) for n in nets]


def _find(ctx: EndpointContext, p: Principal, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The network `ref` names (name, Docker id or its prefix): its Cellplane and Docker views."""
    found = []
    for net, members in _networks(ctx, p):
        view = rv.network_view(net, members)
        if rv.network_ref_matches(view, ref):
            found.append((net, view))
    exact = [f for f in found if ref in (f[0]["name"], f[1]["Name"], f[1]["Id"])]
    if len(exact) == 1:
        return exact[0]
    if len(found) > 1:
        raise Refused(400, f"network {ref} is ambiguous ({len(found)} matches found on id)")
    if not found:
        raise Refused(404, f"network {ref} not found")
    return found[0]


def _create(ctx: EndpointContext, p: Principal, body: Any) -> dict[str, Any]:
    name = rv.check_network_create(body)
    given = str(body.get("Name") or name)
    try:
        spec = NetworkCreate(name=name, labels=rv.body_labels(body))
    except pydantic.ValidationError as exc:
        raise Refused(400, rv.create_refusal("network", name, exc)) from exc
    try:
        with ctx.svc.db.session() as s:
            out = project_networks.create(s, p, ctx.project_id, spec, docker_name=given)
    except Conflict as exc:
        raise Refused(409, f"network with name {name} already exists ({exc})") from exc
    docker_net = rv.network_docker_id(out.body["id"])
    return {"Id": docker_net, "Warning": ""}


async def create(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    body = await json_body(request)
    return json_response(await blocking(_create, ctx, p, body), status=201)


async def list_networks(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    filters = rv.parse_resource_filters(request.query.get("filters"), "network")
    out = []
    for net, members in await blocking(_networks, ctx, p):
        view = rv.network_view(net, members, with_containers=False)
        if rv.network_matches(view, filters):
            out.append(view)
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    _, view = await blocking(_find, ctx, p, request.match_info["ref"])
    return json_response(view)


def _delete(ctx: EndpointContext, p: Principal, ref: str) -> None:
    net, view = _find(ctx, p, ref)
    if net["default"]:
        raise Refused(403, f"{rv.BRIDGE} is a pre-defined network and cannot be removed")
    if view["Containers"]:
        names = ", ".join(c["Name"] for c in view["Containers"].values())
        raise Refused(
            409,
            f"error while removing network: network {view['Name']} has active endpoints "
            f"(containers {names})",
        )
    try:
        project_networks.delete(ctx.svc, p, ctx.project_id, net["name"])
    except NotFound as exc:
        raise Refused(404, f"network {ref} not found") from exc
    except Conflict as exc:
        raise Refused(409, f"error while removing network: {exc}") from exc


async def remove(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    await blocking(_delete, ctx, p, request.match_info["ref"])
    return web.Response(status=204)


def _prune(ctx: EndpointContext, p: Principal, filters: dict[str, list[str]]) -> list[str]:
    deleted = []
    for net, members in _networks(ctx, p):
        view = rv.network_view(net, members)
        if net["default"] or members or not rv.network_matches(view, filters):
            continue
        try:
            project_networks.delete(ctx.svc, p, ctx.project_id, net["name"])
        except (NotFound, Conflict):
            continue  # gone, or joined, meanwhile
        deleted.append(view["Name"])
    return deleted


async def prune(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    filters = rv.parse_resource_filters(request.query.get("filters"), "network")
    deleted = await blocking(_prune, ctx, p, filters)
    return json_response({"NetworksDeleted": deleted})


async def connect(request: web.Request) -> web.Response:
    return await netconnect.connect(request, _find)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/networks/create", create),
        ("GET", "/networks", list_networks),
        ("POST", "/networks/prune", prune),
        ("GET", "/networks/{ref}", inspect),
        ("DELETE", "/networks/{ref}", remove),
        ("POST", "/networks/{ref}/connect", connect),
        ("POST", "/networks/{ref}/disconnect", connect),
    ]
