"""`docker network connect` / `disconnect` on a Docker-compatible endpoint, and every network of a
container in `docker inspect`.

A container (a cell) may be on several networks of its project. Connecting it to one more is a
change of the cell (`services.network_attach`: its address there, from the control plane), then
of its engine container, running or stopped, through its host's agent (podman's network connect:
a running container gets the interface at once). Disconnecting takes it off one of them; its last
network stays (a cell is always on one: 400 naming that). `--ip`, `--ip6`, `--link`, `--alias`
and `--driver-opt` are refused (400): the control plane gives the address, and a container's
names are the same on each of its networks.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cellplane.dockerapi import naming
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    json_body,
    principal,
    resolve,
    until_made,
)
from cellplane.dockerapi.mapping import Refused
from cellplane.dockerapi.views import aliases, docker_id
from cellplane.errors import Conflict, NotFound
from cellplane.services import agent_proxy, network_attach
from cellplane.services.context import Principal

__all__ = ["check_body", "connect", "inspect_networks"]

BRIDGE = "bridge"


def check_body(body: Any, connecting: bool) -> str:
    """The container a connect/disconnect body names; 400 for what this endpoint does not do."""
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise Refused(400, "the body must name a Container")
    config = body.get("EndpointConfig") if connecting else None
    if isinstance(config, dict):
        ipam = config.get("IPAMConfig") or {}
        refused = [
            flag
            for flag, given in (
                ("--ip", isinstance(ipam, dict) and ipam.get("IPv4Address")),
                ("--ip6", isinstance(ipam, dict) and ipam.get("IPv6Address")),
                ("--link", config.get("Links")),
                ("--alias", config.get("Aliases")),
                ("--driver-opt", config.get("DriverOpts")),
            )
            if given
        ]
        if refused:
            raise Refused(
                400,
                f"network connect: {', '.join(refused)} not supported on this endpoint (the "
                "control plane gives each network's address; a container has the same names on "
                "each of its networks)",
            )
    return str(body["Container"])


def _check(
    ctx: EndpointContext, p: Principal, find: Any, ref: str, container: str, connecting: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container and the network (Cellplane view), refused as Docker does when the container
    is on it already (connect) or is not (disconnect)."""
    net, view = find(ctx, p, ref)
    cell = resolve(ctx, p, container)
    on_it = docker_id(cell["id"]) in view["Containers"]
    if connecting and on_it:
        raise Refused(
            403, f"endpoint with name {cell['name']} already exists in network {view['Name']}"
        )
    if not connecting and not on_it:
        raise Refused(400, f"container {cell['name']} is not connected to network {view['Name']}")
    return cell, net


async def connect(request: web.Request, find: Any) -> web.Response:
    """`POST /networks/{ref}/connect|disconnect`; `find` resolves the network (networks._find)."""
    ctx, p = context(request), principal(request)
    connecting = request.path.endswith("/connect")
    container = check_body(await json_body(request), connecting)
    cell, net = await blocking(
        _check, ctx, p, find, request.match_info["ref"], container, connecting
    )
    action = "connect" if connecting else "disconnect"
    await until_made(ctx, p, cell)  # `docker create` then `network connect`: on the container
    try:
        await network_attach.apply(ctx.svc, ctx.agent, p, cell["id"], net["id"], action)
    except NotFound as exc:
        raise Refused(404, str(exc)) from exc
    except agent_proxy.AgentRefused as exc:
        status = 501 if exc.agent_status == 501 else 409  # the API's answer otherwise
        raise Refused(status, f"{exc} (container {cell['name']} left as it was)") from exc
    except agent_proxy.AgentUnreachable as exc:
        raise Refused(409, f"{exc} (container {cell['name']} left as it was)") from exc
    except Conflict as exc:
        raise Refused(400 if "only one" in str(exc) else 409, f"network {action}: {exc}") from exc
    return web.Response(status=200)


def inspect_networks(view: dict[str, Any], cell: dict[str, Any]) -> None:
    """Every network of the cell in `docker inspect`'s NetworkSettings.Networks (the default
    network as "bridge"; the first one under the name the client gave, when it gave one)."""
    nets = cell.get("networks") or []
    if len(nets) < 2:
        return
    given = (cell.get("labels") or {}).get(naming.NETWORK_LABEL)
    names = aliases(cell)
    out: dict[str, Any] = {}
    for i, n in enumerate(nets):
        name = BRIDGE if n["name"] == "default" else n["name"]
        if i == 0 and given:
            name = given
        # The address its engine reports there (the control plane's until it has).
        address = n.get("address") or (cell.get("address") if i == 0 else None) or ""
        out[name] = {"IPAddress": address, "Aliases": names}
    view["NetworkSettings"]["Networks"] = out
