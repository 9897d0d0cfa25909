"""`docker attach`, `run -i`/`-it` and `start -ai`: the container's main process attached.

A container made with `-i` (OpenStdin) or `-t` (Tty) carries the cell labels
`wire.exec.STDIN_LABEL`/`TTY_LABEL`; the agent creates its engine container with standard input
kept open (closed at the first attached client's end with StdinOnce, as `run -i` asks) and a
TTY. Attaching to such a container hijacks the connection (101), waits until the container runs
(the CLI attaches before it starts the container), then opens the main process's streams on the
cell's host agent (`agent_proxy.open_attach`: the engine's own attach, hijacked, relayed as exec
frames): what the client sends is the process's stdin (with `stdin=1`, which needs `cells:write`
and is audited as `cell.attach`; its half-close closes that stdin), the process's output goes
back in Docker's frames (raw with a TTY). An attach that comes before the first start (a container
`docker create` made, desired CREATED) opens the session on the made container before it answers
101, as Docker does: the CLI sends the start only after the 101, so the whole output reaches the
session, once. `POST /containers/{id}/resize` resizes the attached TTY (a size that comes before
the session opens is kept for it). Closing the connection detaches; the process goes on. The
engine's detach keys (ctrl-p ctrl-q) detach too.

A container without either label keeps the output-only attach of `dockerapi.streams` (what
such a container would read is dropped, as Docker drops stdin sent to a container whose stdin
is not open).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cellplane.dockerapi import streams, views
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    flag,
    principal,
    record_change,
    resolve,
    until_made,
)
from cellplane.dockerapi.execs import HijackedClient, docker_frame, size_param
from cellplane.dockerapi.mapping import Refused
from cellplane.errors import Conflict, NotFound
from cellplane.services import agent_proxy, cell_access, cells, docker_endpoints
from cellplane.services.context import Principal
from cellplane.wire import exec as wire

__all__ = ["interactive", "resize", "routes"]


@dataclass
class _Attached:
    """One live interactive attach of a cell: its agent session once open, the size to apply."""

    tty: bool
    session: agent_proxy.AgentExec | None = None
    size: tuple[int, int] | None = None  # (cols, rows)
    opened: asyncio.Event = field(default_factory=asyncio.Event)


#: The live interactive attaches of this process, by cell id (the newest per cell resizes).
_ATTACHED: dict[str, _Attached] = {}


def interactive(cell: dict[str, Any]) -> tuple[str | None, bool]:
    """The cell's stdin mode (``open``, ``once`` or None) and whether it has a TTY."""
    labels = cell.get("labels") or {}
    stdin = labels.get(wire.STDIN_LABEL)
    return (stdin if stdin in ("open", "once") else None), labels.get(wire.TTY_LABEL) == "true"


async def resize(cell: dict[str, Any], cols: int, rows: int) -> bool:
    """Resize the attached TTY of `cell` (kept for the session when it is not open yet); False
    when the cell has no TTY."""
    _, tty = interactive(cell)
    if not tty:
        return False
    attached = _ATTACHED.get(cell["id"])
    if attached is None:
        return True  # nobody attached: nothing to resize (Docker resizes the TTY itself)
    attached.size = (cols, rows)
    if attached.session is not None:
        with contextlib.suppress(OSError):
            await attached.session.send(wire.RESIZE, wire.resize(cols, rows))
    return True


async def attach(request: web.Request) -> web.StreamResponse:
    ctx, p = context(request), principal(request)
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    stdin_mode, tty = interactive(cell)
    if stdin_mode is None and not tty:
        return await streams.attach(request)
    if not flag(request, "stream"):
        raise Refused(400, "attach to a container with -i/-t needs stream=1")
    with_stdin = flag(request, "stdin") and stdin_mode is not None
    if with_stdin:  # writing to the process is a change: a project viewer may only watch
        await blocking(docker_endpoints.authorize, ctx.svc, p, ctx.project_id, "cells:write")
        await record_change(request, "cell.attach", cell, {"cell": cell["name"], "stdin": True})
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    resp = web.StreamResponse(
        status=101 if upgrade else 200,
        headers={
            "Content-Type": streams.RAW_STREAM
            if tty
            else "application/vnd.docker.multiplexed-stream",
            **({"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}),
        },
    )
    transport = request.transport
    if transport is None:
        return resp
    guard = streams.HalfClose(transport)
    client = HijackedClient(guard.tls)
    transport.set_protocol(client)
    attached = _Attached(tty=tty)
    _ATTACHED[cell["id"]] = attached
    outputs = {wire.STDOUT: flag(request, "stdout"), wire.STDERR: flag(request, "stderr")}
    early: agent_proxy.AgentExec | None = None
    try:
        with streams.attached(cell["id"]):  # a `--rm` removal waits for it to end
            if cell["desired_state"] == "CREATED":
                # Before its first start (`docker run`, `start -ai`): Docker's order. The session
                # opens on the made container, then the 101 goes out, and only then does the CLI
                # send the start: nothing the process prints is missed or replayed.
                early = await _open_before_start(ctx, p, cell, transport, with_stdin)
            await resp.prepare(request)
            if early is not None:
                await _session(
                    attached, cell, ctx, p, client, transport, with_stdin, False, outputs, early
                )
            elif await _until_running(ctx, p, cell, client):
                # A container made before this version, never started: the engine replays its
                # output from the start (not reliable on podman 4.3; docs/docker.md).
                replay = not cell.get("container_id")
                await _session(
                    attached, cell, ctx, p, client, transport, with_stdin, replay, outputs
                )
    finally:
        if _ATTACHED.get(cell["id"]) is attached:
            del _ATTACHED[cell["id"]]
        guard.release()
        transport.close()
    return resp


async def _open_before_start(
    ctx: EndpointContext,
    p: Principal,
    cell: dict[str, Any],
    transport: Any,
    with_stdin: bool,
) -> agent_proxy.AgentExec | None:
    """The main process's session on the cell's made, not yet started container, once it is
    made; None when it will not be (failed, removed), was started meanwhile, or the client left
    (the caller then attaches the way it does to a running container)."""
    made = await until_made(ctx, p, cell)
    if made is None or made["state"] != "CREATED" or not made.get("container_id"):
        return None
    if transport.is_closing():
        return None
    try:
        target = await blocking(cell_access.locate, ctx.svc, p, made["id"])
        return await agent_proxy.open_attach(target, stdin=with_stdin, logs=False, svc=ctx.svc)
    except (Conflict, NotFound, OSError):
        return None


async def _until_running(
    ctx: EndpointContext, p: Principal, cell: dict[str, Any], client: HijackedClient
) -> bool:
    """Wait for the container to run (or to have run since `cell` was seen); False when it
    will not (removed, failed) or the client left."""
    topic, first = f"cell:{cell['id']}", cell
    while not client.closed.is_set():
        seen = ctx.svc.notifier.version(topic)
        try:
            cell = await blocking(cells.get, ctx.svc, p, cell["id"])
        except NotFound:
            return False
        if cell.get("container_id") and (
            views.docker_state(cell) == "running" or streams.ran_since(first, cell)
        ):
            return True
        if cell["state"] == "FAILED" or cell["desired_state"] == "DELETED":
            return False
        await ctx.svc.notifier.wait(topic, seen, 1.0)
    return False


async def _session(
    attached: _Attached,
    cell: dict[str, Any],
    ctx: EndpointContext,
    p: Principal,
    client: HijackedClient,
    transport: Any,
    with_stdin: bool,
    replay: bool,
    outputs: dict[int, bool],
    session: agent_proxy.AgentExec | None = None,
) -> None:
    if session is None:
        try:
            target = await blocking(cell_access.locate, ctx.svc, p, cell["id"])
            session = await agent_proxy.open_attach(
                target, stdin=with_stdin, logs=replay, svc=ctx.svc
            )
        except (Conflict, NotFound) as exc:  # gone meanwhile: say so on the stream, as Docker
            message = f"cannot attach: {exc}\r\n".encode()
            transport.write(message if attached.tty else docker_frame(2, message))
            return
    attached.session = session
    try:
        if attached.size is not None:
            await session.send(wire.RESIZE, wire.resize(*attached.size))
        up = asyncio.create_task(_upstream(session, client, with_stdin))
        down = asyncio.create_task(_downstream(session, transport, attached.tty, outputs))
        gone = asyncio.create_task(client.closed.wait())
        try:
            await asyncio.wait({down, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down, gone):
                task.cancel()
            for task in (up, down, gone):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        attached.session = None
        await session.close()


async def _upstream(
    session: agent_proxy.AgentExec, client: HijackedClient, with_stdin: bool
) -> None:
    """The client's bytes to the process's stdin; its half-close closes that stdin (with
    StdinOnce the process reads its end). Without stdin what the client sends is dropped."""
    while (data := await client.incoming.get()) is not None:
        if with_stdin:
            await session.send(wire.STDIN, data)
    if with_stdin and not client.closed.is_set():
        await session.send(wire.CLOSE, wire.close_stdin())


async def _downstream(
    session: agent_proxy.AgentExec, transport: Any, tty: bool, outputs: dict[int, bool]
) -> None:
    """The process's output to the client until the process ends (or detaches)."""
    with contextlib.suppress(OSError, wire.ProtocolError):
        async for channel, payload in session.frames():
            if channel == wire.STATUS:
                return
            if not outputs.get(channel):
                continue
            transport.write(payload if tty else docker_frame(channel, payload))


async def resize_container(request: web.Request) -> web.Response:
    """`POST /containers/{id}/resize`: the attached TTY of a container made with `-t`."""
    ctx, p = context(request), principal(request)
    cols, rows = size_param(request)
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    if not await resize(cell, cols, rows):
        raise Refused(
            409,
            f"container {views.docker_id(cell['id'])} has no TTY to resize (made without "
            "-t/--tty; exec -t sessions resize through /exec/ID/resize)",
        )
    return web.Response(status=200)


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/containers/{ref}/attach", attach),
        ("POST", "/containers/{ref}/resize", resize_container),
    ]
