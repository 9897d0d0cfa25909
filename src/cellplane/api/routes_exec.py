"""Interactive exec: the WebSocket `GET /v1/cells/{cell_id}/exec` (docs/exec.md).

The handshake carries the command and the modes in its query (`command` repeated, `stdin`,
`tty`, `cols` and `rows` for the TTY's first size) and the caller's credentials as any route
does (a bearer token, or a client certificate); it needs `cells:write`, like
`POST /v1/cells/{id}/exec`, and the cell must be running. Every refusal comes before the
WebSocket is accepted, as a plain HTTP answer with a problem document (the WebSocket denial
response), so clients see the same 401/403/404/409/422 as elsewhere. Once accepted, the route
relays frames (:mod:`cellplane.wire.exec`) between the client and the cell's host agent
(:func:`cellplane.services.agent_proxy.open_exec`) until the agent sends the status.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams

from cellplane.api.deps import authenticate
from cellplane.api.jsonresp import problem
from cellplane.errors import CellplaneError, FieldError, Forbidden, ValidationFailed
from cellplane.services import agent_proxy, cell_access
from cellplane.services.context import Services
from cellplane.wire import exec as wire

__all__ = ["parse_exec_query", "router"]

log = structlog.get_logger("cellplane.api.exec")

router = APIRouter(tags=["cells"])

PERMISSION = "cells:write"
MAX_ARGS = 1024
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}
#: Frames a client may send; the others are the cell's.
_CLIENT_CHANNELS = frozenset({wire.STDIN, wire.RESIZE, wire.CLOSE})


def _flag(query: QueryParams, name: str, errors: list[FieldError]) -> bool:
    value = query.get(name, "").lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        errors.append(FieldError(f"query.{name}", "must be true or false"))
    return False


def parse_exec_query(query: QueryParams) -> tuple[list[str], bool, bool, tuple[int, int] | None]:
    """The handshake's query into (command, stdin, tty, size); ValidationFailed names the field."""
    errors: list[FieldError] = []
    command = query.getlist("command")
    if not command:
        errors.append(FieldError("query.command", "give the command: ?command=sh&command=-c..."))
    elif len(command) > MAX_ARGS:
        errors.append(FieldError("query.command", f"at most {MAX_ARGS} arguments"))
    stdin = _flag(query, "stdin", errors)
    tty = _flag(query, "tty", errors)
    size: tuple[int, int] | None = None
    cols, rows = query.get("cols"), query.get("rows")
    if (cols is None) != (rows is None):
        errors.append(FieldError("query.cols", "cols and rows go together"))
    elif cols is not None and rows is not None:
        try:
            size = wire.parse_resize(wire.resize(int(cols), int(rows)))
        except (ValueError, wire.ProtocolError):
            errors.append(FieldError("query.cols", f"cols and rows must be 1-{wire.MAX_DIMENSION}"))
    if errors:
        raise ValidationFailed(errors)
    return command, stdin, tty, size


async def _deny(websocket: WebSocket, exc: CellplaneError) -> None:
    extra = {}
    if isinstance(exc, ValidationFailed):
        extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    answer = problem(exc.status, exc.slug, exc.title, exc.detail, **extra)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(answer)
        return
    # A server without denial responses: accept, say why on the status channel, close.
    await websocket.accept()
    await websocket.send_bytes(wire.encode_message(wire.STATUS, wire.status(None, exc.detail)))
    await websocket.close(1008)


async def _upstream(websocket: WebSocket, agent: agent_proxy.AgentExec) -> str | None:
    """The client's frames to the agent; returns why the client broke the protocol, if it did."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("bytes")
            if data is None:
                return "frames are binary messages (channel byte, then payload)"
            channel, payload = wire.decode_message(data)
            if channel not in _CLIENT_CHANNELS:
                return (
                    f"a client does not send on channel {channel} ({wire.CHANNEL_NAMES[channel]})"
                )
            if channel == wire.RESIZE:
                wire.parse_resize(payload)
            await agent.send(channel, payload)
    except wire.ProtocolError as exc:
        return str(exc)
    except (OSError, WebSocketDisconnect):
        return None


async def _relay(websocket: WebSocket, agent: agent_proxy.AgentExec) -> None:
    upstream = asyncio.create_task(_upstream(websocket, agent))
    ended = False
    try:
        downstream = asyncio.ensure_future(_downstream(websocket, agent))
        done, _ = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        if upstream in done and (broken := upstream.result()) is not None:
            downstream.cancel()
            await websocket.close(1008, broken[:120])
            return
        if upstream in done:  # the client left: the agent's side ends with it
            await agent.close()
        ended = await downstream
        if not ended:
            error = "the cell's host agent ended the exec without its status"
            await websocket.send_bytes(wire.encode_message(wire.STATUS, wire.status(None, error)))
        await websocket.close(1000)
    except (OSError, WebSocketDisconnect, RuntimeError):
        pass  # the client is gone
    finally:
        upstream.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await upstream
        await agent.close()


async def _downstream(websocket: WebSocket, agent: agent_proxy.AgentExec) -> bool:
    """The agent's frames to the client; True once the status has gone."""
    async for channel, payload in agent.frames():
        await websocket.send_bytes(wire.encode_message(channel, payload))
        if channel == wire.STATUS:
            return True
    return False


@router.websocket("/v1/cells/{cell_id}/exec")
async def cell_exec_stream(websocket: WebSocket, cell_id: str) -> None:
    svc: Services = websocket.app.state.services
    try:
        principal = authenticate(websocket)
        if not principal.can(PERMISSION):
            raise Forbidden(f"this needs the {PERMISSION!r} permission")
        command, stdin, tty, size = parse_exec_query(websocket.query_params)
        mode = "tty" if tty else ("interactive" if stdin else "stream")
        target = await run_in_threadpool(
            cell_access.locate_exec, svc, principal, cell_id, command, mode=mode
        )
        agent = await agent_proxy.open_exec(
            target, command, stdin=stdin, tty=tty, size=size, svc=svc
        )
    except CellplaneError as exc:
        await _deny(websocket, exc)
        return
    offered = websocket.scope.get("subprotocols") or []
    try:
        await websocket.accept(
            subprotocol=wire.SUBPROTOCOL if wire.SUBPROTOCOL in offered else None
        )
    except BaseException:
        await agent.close()
        raise
    log.info("exec attached", cell=cell_id, mode=mode)
    await _relay(websocket, agent)
