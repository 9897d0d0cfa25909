"""More container routes of a Docker-compatible endpoint: `cp` (the archive API), `stats`, `top`,
`changes` (`diff`), `export`, `rename`, `update`, `pause`/`unpause`.

Each reaches the cell's container through its host agent (`services.agent_proxy.
open_container_op`, `agent.container_ops`), which uses the engine's own operation. Archives and
stats are streamed; an upload is checked as it arrives (its size against the image upload's
limit, every member's path against the destination) into a scratch file on disk, and only a
whole, clean archive goes on to the agent, so a refused upload changes nothing in the container.
"""

from __future__ import annotations

import base64
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

from aiohttp import web

from cellplane.dockerapi import views
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    flag,
    json_body,
    json_response,
    principal,
    record_change,
    resolve,
    until_made,
)
from cellplane.dockerapi.extras_views import (
    STAT_HEADER,
    TarChecker,
    check_container_path,
    path_stat_header,
    read_only_refusal,
    stats_view,
    update_fields,
)
from cellplane.dockerapi.mapping import AUTO_REMOVE_LABEL, RESTART_LABEL, Refused, restart_policy
from cellplane.errors import Conflict, NotFound
from cellplane.services import agent_proxy, cell_access, cell_changes
from cellplane.services.context import Principal

__all__ = ["routes"]

CHUNK = 1 << 16
#: Copying files out of a container reads anything in it (keys, configuration), as an exec
#: could: it takes what exec takes, not a viewer's `cells:read`.
READ_FILES = "cells:write"


async def _locate(
    ctx: EndpointContext, p: Principal, cell: dict[str, Any], permission: str
) -> agent_proxy.Target:
    await until_made(ctx, p, cell)
    try:
        return await blocking(cell_access.locate, ctx.svc, p, cell["id"], permission)
    except (Conflict, NotFound) as exc:
        raise Refused(
            409, f"container {cell['name']} has no running engine container: {exc}"
        ) from exc


async def _op(
    ctx: EndpointContext,
    p: Principal,
    cell: dict[str, Any],
    method: str,
    what: str,
    *,
    path: str = "",
    permission: str = "cells:read",
    **kwargs: Any,
) -> Any:
    """The agent's open answer to one container operation; its refusals in Docker's words."""
    target = await _locate(ctx, p, cell, permission)
    try:
        return await agent_proxy.open_container_op(ctx.agent, target, method, what, **kwargs)
    except agent_proxy.AgentRefused as exc:
        raise _refusal(exc, cell, path) from exc
    except agent_proxy.AgentUnreachable as exc:
        # As everywhere else (the REST API, the endpoint's logs and exec): the cell's host is
        # down or cut off, a conflict with the cell's state, not this server failing.
        raise Refused(409, str(exc)) from exc


def _refusal(exc: agent_proxy.AgentRefused, cell: dict[str, Any], path: str) -> Refused:
    if exc.agent_status == 404 and exc.text == "path":
        return Refused(404, f"Could not find the file {path} in container {cell['name']}")
    if exc.agent_status == 404:
        return Refused(404, f"No such container: {cell['name']}")
    if exc.agent_status in (400, 409, 501):
        return Refused(exc.agent_status, str(exc))
    return Refused(409, f"the cell's host failed: {exc}")  # the API's answer, whatever it was


def _stat_of(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _cell(request: web.Request) -> tuple[EndpointContext, Principal, dict[str, Any]]:
    ctx, p = context(request), principal(request)
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    return ctx, p, cell


async def archive_head(request: web.Request) -> web.Response:
    path = check_container_path(request.query.get("path", ""))
    ctx, p, cell = await _cell(request)
    resp = await _op(
        ctx, p, cell, "HEAD", "archive", path=path, permission=READ_FILES, params={"path": path}
    )
    await resp.aclose()
    stat = _stat_of(resp.headers.get(STAT_HEADER))
    return web.Response(status=200, headers={STAT_HEADER: path_stat_header(stat)})


async def archive_get(request: web.Request) -> web.StreamResponse:
    path = check_container_path(request.query.get("path", ""))
    ctx, p, cell = await _cell(request)
    upstream = await _op(
        ctx,
        p,
        cell,
        "GET",
        "archive",
        path=path,
        permission=READ_FILES,
        params={"path": path},
        read_timeout=300.0,
    )
    return await _tar(
        request,
        upstream,
        lambda: {STAT_HEADER: path_stat_header(_stat_of(upstream.headers.get(STAT_HEADER)))},
    )


async def export(request: web.Request) -> web.StreamResponse:
    """`docker export`: a tar of the container's file system, streamed from its host's engine
    (it reads every file, as `cp` does: `cells:write`)."""
    ctx, p, cell = await _cell(request)
    upstream = await _op(ctx, p, cell, "GET", "export", permission=READ_FILES, read_timeout=300.0)
    return await _tar(request, upstream, dict)


async def _tar(
    request: web.Request, upstream: Any, headers: Callable[[], dict[str, str]]
) -> web.StreamResponse:
    """The agent's tar (`upstream`, an open answer, closed here whatever happens), relayed to
    the client as it comes, with the `headers` read from the agent's answer."""
    try:
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/x-tar", **headers()}
        )
        await resp.prepare(request)
        async for chunk in upstream.aiter_raw():
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        await upstream.aclose()


async def _spool(request: web.Request, limit: int, scratch: IO[bytes]) -> int:
    """The request's tar into `scratch`, checked member by member; its size."""
    checker = TarChecker()
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the archive is larger than this server's limit of {limit} bytes")
        try:
            checker.feed(chunk)
        except ValueError as exc:
            raise Refused(400, f"cannot extract the archive: {exc}") from exc
        await blocking(scratch.write, chunk)
    if size == 0:
        raise Refused(400, "the request body is empty: send a tar archive")
    return size


async def _file_chunks(scratch: IO[bytes]) -> AsyncIterator[bytes]:
    await blocking(scratch.seek, 0)
    while chunk := await blocking(scratch.read, CHUNK):
        yield chunk


async def archive_put(request: web.Request) -> web.Response:
    path = check_container_path(request.query.get("path", ""))
    no_overwrite = flag(request, "noOverwriteDirNonDir")
    flag(request, "copyUIDGID")  # ownership as in the archive either way (the engine's rule)
    ctx, p, cell = await _cell(request)
    if (refusal := read_only_refusal(cell, path)) is not None:
        raise refusal
    await _locate(ctx, p, cell, "cells:write")  # before reading the upload: no container, no read
    with tempfile.TemporaryFile(prefix="cp-archive-") as scratch:
        size = await _spool(request, ctx.svc.max_image_bytes, scratch)
        resp = await _op(
            ctx,
            p,
            cell,
            "PUT",
            "archive",
            path=path,
            permission="cells:write",
            params={"path": path, "noOverwriteDirNonDir": "true" if no_overwrite else "false"},
            content=_file_chunks(scratch),
            length=size,
            read_timeout=300.0,
        )
        await resp.aclose()
    # The endpoint's audit records POSTs and DELETEs; a copy into a container is a change too.
    await record_change(
        request, "docker PUT /containers/{ref}/archive", cell, {"path": path, "bytes": size}
    )
    return web.Response(status=200)


async def stats(request: web.Request) -> web.StreamResponse:
    stream = flag(request, "stream", True) and not flag(request, "one-shot")
    ctx, p, cell = await _cell(request)
    if views.docker_state(cell) != "running":
        # Docker answers a stopped container's stats with an empty sample.
        return json_response(stats_view({}, views.docker_id(cell["id"]), cell["name"], 0))
    upstream = await _op(
        ctx,
        p,
        cell,
        "GET",
        "stats",
        params={"stream": "true" if stream else "false"},
        read_timeout=None if stream else 30.0,
    )
    limit = int(cell["memory_mb"]) * 1024 * 1024
    cid = views.docker_id(cell["id"])
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    try:
        await resp.prepare(request)
        buffer = b""
        async for chunk in upstream.aiter_raw():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    sample = stats_view(json.loads(line), cid, cell["name"], limit)
                    await resp.write(json.dumps(sample).encode() + b"\n")
            if not stream and lines:
                break
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
    except ConnectionError:
        pass  # the client stopped reading (`docker stats` ended)
    finally:
        await upstream.aclose()
    return resp


async def top(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args", "")
    if len(ps_args) > 256 or "\x00" in ps_args:
        raise Refused(400, "ps_args is too long or holds NUL bytes")
    ctx, p, cell = await _cell(request)
    if views.docker_state(cell) != "running":
        raise Refused(409, f"Container {cell['name']} is not running")
    upstream = await _op(
        ctx, p, cell, "GET", "top", params={"ps_args": ps_args} if ps_args else None
    )
    try:
        data = json.loads(await upstream.aread())
    finally:
        await upstream.aclose()
    return json_response(
        {"Titles": data.get("Titles") or [], "Processes": data.get("Processes") or []}
    )


async def changes(request: web.Request) -> web.Response:
    ctx, p, cell = await _cell(request)
    upstream = await _op(ctx, p, cell, "GET", "changes")
    try:
        data = json.loads(await upstream.aread())
    finally:
        await upstream.aclose()
    return json_response(
        [
            {"Path": str(c.get("Path") or ""), "Kind": int(c.get("Kind") or 0)}
            for c in data.get("changes") or []
        ]
    )


async def rename(request: web.Request) -> web.Response:
    new_name = (request.query.get("name") or "").removeprefix("/")
    if not new_name:
        raise Refused(400, "rename needs a new name (name=...)")
    ctx, p, cell = await _cell(request)
    await blocking(cell_changes.rename, ctx.svc, p, cell["id"], new_name)
    return web.Response(status=204)


async def update(request: web.Request) -> web.Response:
    body = await json_body(request)
    fields = update_fields(body)
    docker_restart = fields.pop("restart", None)
    ctx, p, cell = await _cell(request)
    restart: dict[str, Any] | None = None
    restart_label: dict[str, str] = {}
    if docker_restart is not None:  # checked before anything changes
        restart = restart_policy(docker_restart, restart_label)
        if (
            restart["policy"] != "never"
            and (cell.get("labels") or {}).get(AUTO_REMOVE_LABEL) == "true"
        ):
            raise Refused(
                400,
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            )
    if fields:
        await _resize(ctx, p, cell, fields)
    if restart is not None:
        await blocking(
            cell_changes.set_restart,
            ctx.svc,
            p,
            cell["id"],
            restart["policy"],
            restart.get("max_retries"),
            {RESTART_LABEL: restart_label.get(RESTART_LABEL)},
        )
    return json_response({"Warnings": []})


async def _resize(
    ctx: EndpointContext, p: Principal, cell: dict[str, Any], fields: dict[str, Any]
) -> None:
    """New CPU/memory limits: the cell's, then the running container's (both or neither)."""
    changed = await blocking(cell_changes.resize, ctx.svc, p, cell["id"], **fields)
    if views.docker_state(cell) == "running":
        try:
            resp = await _op(
                ctx,
                p,
                cell,
                "POST",
                "limits",
                permission="cells:write",
                json_body={"cpu": changed["cpu"], "memory_mb": changed["memory_mb"]},
            )
            await resp.aclose()
        except Refused:
            # The running container kept its limits: so does the cell (a decrease always fits).
            await blocking(
                cell_changes.resize,
                ctx.svc,
                p,
                cell["id"],
                cpu=cell["cpu"],
                memory_mb=cell["memory_mb"],
            )
            raise


async def send_signal(
    ctx: EndpointContext, p: Principal, cell: dict[str, Any], number: int
) -> None:
    """`docker kill --signal` of a signal other than SIGKILL: sent by the engine of the cell's
    host to the container's main process, through its agent. The cell's desired state does not
    change: an exit the signal causes is observed as any exit (its restart policy applies)."""
    resp = await _op(
        ctx, p, cell, "POST", "signal", permission="cells:write", json_body={"signal": number}
    )
    await resp.aclose()


async def pause(request: web.Request) -> web.Response:
    """`pause`/`unpause`: the engine freezes (thaws) every process of the container, through
    its host agent; the cell is PAUSED (RUNNING again). An engine that cannot: 501."""
    thaw = request.path.endswith("/unpause")
    ctx, p, cell = await _cell(request)
    state, name = views.docker_state(cell), cell["name"]
    if thaw and state != "paused":
        raise Refused(409, f"Container {name} is not paused")
    if not thaw and state != "running":
        raise Refused(
            409, f"Container {name} is {'already paused' if state == 'paused' else 'not running'}"
        )
    resp = await _op(ctx, p, cell, "POST", "unpause" if thaw else "pause", permission="cells:write")
    await resp.aclose()
    await blocking(cell_changes.set_paused, ctx.svc, p, cell["id"], not thaw)
    return web.Response(status=204)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("HEAD", "/containers/{ref}/archive", archive_head),
        ("GET", "/containers/{ref}/archive", archive_get),
        ("PUT", "/containers/{ref}/archive", archive_put),
        ("GET", "/containers/{ref}/stats", stats),
        ("GET", "/containers/{ref}/top", top),
        ("GET", "/containers/{ref}/changes", changes),
        ("GET", "/containers/{ref}/export", export),
        ("POST", "/containers/{ref}/rename", rename),
        ("POST", "/containers/{ref}/update", update),
        ("POST", "/containers/{ref}/pause", pause),
        ("POST", "/containers/{ref}/unpause", pause),
    ]
