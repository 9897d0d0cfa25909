"""Container routes of a Docker-compatible endpoint: create, start, stop, kill, restart, rm, ps,
inspect. Each one is the cell service the REST API calls, for the caller, in the endpoint's project.

Docker's calls are synchronous where Cellplane's are tasks: start, stop, restart and rm answer
once their task has ended, as `docker` expects the container to be running (or gone) then.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pydantic
from aiohttp import web

from cellplane.dockerapi import build, extras, image_archive, mapping, netconnect, streams, views
from cellplane.dockerapi.base import (
    AUDITED,
    EndpointContext,
    audit_event,
    blocking,
    context,
    flag,
    json_body,
    json_response,
    principal,
    project_cells,
    resolve,
    settle,
)
from cellplane.dockerapi.extras_views import kill_signal
from cellplane.dockerapi.healthchecks import healthcheck_fields, merged
from cellplane.dockerapi.mapping import Refused
from cellplane.errors import NotFound
from cellplane.ids import utcnow
from cellplane.services import (
    audit,
    cell_mounts,
    cells,
    docker_endpoints,
    docker_resources,
    placement,
    volumes,
)
from cellplane.services.context import Principal
from cellplane.services.schemas import CellCreate, VolumeCreate

__all__ = ["routes"]

#: How long a start, stop, restart or rm waits for its task before answering anyway.
TASK_WAIT_S = 300.0


def _create(
    ctx: EndpointContext, p: Principal, name: str | None, body: Any, event: dict[str, Any]
) -> dict[str, Any]:
    fields = mapping.cell_fields(name, body)
    found = docker_endpoints.image_named(ctx.svc, mapping.image_candidates(fields["image"]))
    if found is None:
        raise Refused(404, f"No such image: {fields['image']}")
    fields["image"], path = found
    _image_healthcheck(fields, body, Path(path) if path else None)
    warnings = []
    if "cpu" not in fields and "memory_mb" not in fields:
        warnings.append(
            "no --cpus or --memory given: the container runs with the SMALL flavor's size"
        )
    try:
        spec = CellCreate.model_validate(fields)
    except pydantic.ValidationError as exc:
        raise Refused(400, _pydantic_message(exc)) from exc
    # Host paths the operator does not allow are refused before anything is made (403).
    cell_mounts.check_host_paths(ctx.svc, spec.volumes)
    # `docker run -v name:/path` makes the named volume when it does not exist yet.
    for vol in docker_endpoints.missing_volumes(
        ctx.svc, ctx.project_id, [m.volume for m in spec.volumes if m.volume is not None]
    ):
        with ctx.svc.db.session() as s:
            volumes.create(ctx.svc, s, p, ctx.project_id, VolumeCreate(name=vol))
    with ctx.svc.db.session() as s:
        # Docker's create makes the container (placed, made, not started): `cp` into it and an
        # attach before the start work on the container itself, as with Docker.
        out = cells.create(ctx.svc, s, p, ctx.project_id, spec, prepare=True)
        # Placed in the same transaction rather than by the controller's next pass: the agent
        # is asked to make the container at once (`docker run`'s start follows at once). A cell
        # that does not fit yet waits for the controller, as any cell does.
        placed = placement.place_one(ctx.svc, s, out.body["entity"]["id"], utcnow())
        audit.record(s, **event)  # with the cell, in one commit: no second write to wait for
    # The controller is woken only for a cell left to it.
    left = {"controller"} if placed.hosts else set()
    ctx.svc.notifier.publish(*(placed.committed(ctx.svc) | (set(out.topics) - left)))
    return {"Id": views.docker_id(out.body["entity"]["id"]), "Warnings": warnings}


def _image_healthcheck(fields: dict[str, Any], body: dict[str, Any], path: Path | None) -> None:
    """The image's HEALTHCHECK merged into the create's (`healthchecks.merged`); an image
    whose own check is not one this endpoint runs is run without it."""
    image = image_archive.image_healthcheck(path) if path is not None else None
    if image is None:
        return
    try:
        healthcheck_fields(image)
    except Refused:
        return
    check = healthcheck_fields(merged(body.get("Healthcheck"), image))
    if check is None:
        fields.pop("healthcheck", None)
    else:
        fields["healthcheck"] = check


def _pydantic_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


async def create(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    build.check_platform(request.query.get("platform", ""))  # `run --platform`
    body = await json_body(request)
    event = audit_event(request, 201)
    answer = await blocking(_create, ctx, p, request.query.get("name") or None, body, event)
    request[AUDITED] = True
    return json_response(answer, status=201)


async def list_containers(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    filters = views.parse_filters(request.query.get("filters"))
    show_all = flag(request, "all")
    raw_limit = request.query.get("limit") or "-1"
    if not raw_limit.lstrip("-").isdigit():
        raise Refused(400, f"invalid value for 'limit': {raw_limit!r}")
    limit = int(raw_limit)
    now = utcnow()
    items = await blocking(project_cells, ctx, p)
    out = []
    for cell in sorted(items, key=lambda c: c["created_at"], reverse=True):
        running = views.docker_state(cell) in ("running", "paused")  # Docker's `ps` shows both
        if not show_all and "status" not in filters and not running:
            continue
        if views.matches(cell, filters):
            out.append(views.summary(cell, now))
    return json_response(out[:limit] if limit > 0 else out)


async def inspect(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    network = await blocking(docker_resources.cell_network, ctx.svc, cell["id"])
    view = views.inspect(cell, network or "bridge")  # Docker's name of the default network
    if network is not None:
        view["HostConfig"]["NetworkMode"] = network
    netconnect.inspect_networks(view, cell)
    return json_response(view)


def _transition(
    ctx: EndpointContext,
    p: Principal,
    kind: str,
    cell_id: str,
    timeout: float | None,
    event: dict[str, Any] | None = None,
) -> str:
    """Ask for the change; its task's id. `event`: the request's audit event, recorded in the
    same transaction (no second write for the answer to wait behind)."""
    with ctx.svc.db.session() as s:
        if kind == "start":
            out = cells.start(ctx.svc, s, p, cell_id)
        elif kind == "stop":
            out = cells.stop(ctx.svc, s, p, cell_id, timeout)
        elif kind == "restart":
            out = cells.restart(ctx.svc, s, p, cell_id, timeout)
        else:
            out = cells.delete(ctx.svc, s, p, cell_id)
        if event is not None:
            audit.record(s, **event)
    ctx.svc.notifier.publish(*out.topics)
    return str(out.body["id"])


async def _run(
    ctx: EndpointContext, p: Principal, kind: str, cell_id: str, timeout: float | None
) -> None:
    """Ask for the change and wait for its task; a start that failed is Docker's 500."""
    task_id = await blocking(_transition, ctx, p, kind, cell_id, timeout)
    await _settled(ctx, p, kind, cell_id, task_id)


async def _settled(
    ctx: EndpointContext, p: Principal, kind: str, cell_id: str, task_id: str
) -> None:
    """Wait for the change's task; a start that failed is Docker's 500."""
    task = await settle(ctx, p, task_id, TASK_WAIT_S)
    if task["state"] != "ERROR" or kind not in ("start", "restart"):
        return  # (the cell is not read again: a started container's answer waits for nothing)
    try:
        cell = await blocking(cells.get, ctx.svc, p, cell_id)
    except NotFound:
        return
    started = views.docker_state(cell) in ("running", "exited")
    if not started or cell["state"] == "FAILED":
        raise Refused(
            500,
            f"cannot start container {cell['name']}: {task.get('error') or cell.get('message')}",
        )


#: Docker states of a container whose processes exist: stopped, killed, removed only by force.
_LIVE = ("running", "restarting", "paused")


def _timeout(request: web.Request) -> float | None:
    raw = request.query.get("t") or request.query.get("timeout")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise Refused(400, f"invalid value for 't': {raw!r}") from exc
    return 0.0 if value < 0 else min(value, 3600.0)


def _start(
    ctx: EndpointContext, p: Principal, ref: str, event: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The container found and its start asked for, audited, in one trip to a worker thread
    (each trip waits for the GIL beside the create's placement and the agent's reports): its
    state view before the start and the start's task, None when it runs already."""
    before = streams.state_of(ctx, ref)
    if views.docker_state(before) == "running":
        return before, None
    return before, _transition(ctx, p, "start", before["id"], None, event)


async def start(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    event = audit_event(request, 204)
    cell, task_id = await blocking(_start, ctx, p, request.match_info["ref"], event)
    if task_id is None:
        return web.Response(status=304)
    # A start that fails is Docker's 500, recorded by the audit middleware beside the request's
    # own event (the request was carried out; the container did not start).
    await _settled(ctx, p, "start", cell["id"], task_id)
    request[AUDITED] = True
    streams.watch_auto_remove(ctx, p, cell)  # `--rm`: removed once it has exited
    return web.Response(status=204)


async def stop(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    timeout = _timeout(request)
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    if views.docker_state(cell) not in _LIVE:
        return web.Response(status=304)
    await _run(ctx, p, "stop", cell["id"], timeout)
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    number = kill_signal(request.query.get("signal", ""))
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    if views.docker_state(cell) not in _LIVE:
        raise Refused(409, f"Container {cell['name']} is not running")
    if number == signal.SIGKILL:  # the cell is stopped for good, as a stop at once
        await _run(ctx, p, "stop", cell["id"], 0.0)
    else:
        await extras.send_signal(ctx, p, cell, number)
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    timeout = _timeout(request)
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    await _run(ctx, p, "restart", cell["id"], timeout)
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    ctx, p = context(request), principal(request)
    force = flag(request, "force")
    flag(request, "v")  # anonymous volumes: none exist here; named volumes stay, as in Docker
    if flag(request, "link"):
        raise Refused(400, "rm --link is not supported on this endpoint")
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    if views.docker_state(cell) in _LIVE and not force:
        raise Refused(
            409,
            f'cannot remove container "/{cell["name"]}": container is running: stop the '
            "container before removing or force remove",
        )
    if views.docker_state(cell) == "removing":
        raise Refused(409, f"removal of container {cell['name']} is already in progress")
    if force and views.docker_state(cell) in _LIVE:
        # Docker's `rm -f` kills (SIGKILL) rather than waiting out the stop timeout.
        await _run(ctx, p, "stop", cell["id"], 0.0)
    await _run(ctx, p, "delete", cell["id"], None)
    return web.Response(status=204)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/create", create),
        ("GET", "/containers/json", list_containers),
        ("GET", "/containers/{ref}/json", inspect),
        ("POST", "/containers/{ref}/start", start),
        ("POST", "/containers/{ref}/stop", stop),
        ("POST", "/containers/{ref}/kill", kill),
        ("POST", "/containers/{ref}/restart", restart),
        ("DELETE", "/containers/{ref}", remove),
    ]
