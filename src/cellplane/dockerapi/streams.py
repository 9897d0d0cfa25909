"""Streaming container routes: logs, wait, attach (output only); the removal of `--rm` containers.

Logs come from the cell's host agent through `services.agent_proxy.open_docker_logs`, already in
Docker's framing (8-byte headers naming stdout or stderr), and are relayed as they are. `attach`
hijacks the connection (101, then a raw stream) and relays the followed logs: that is what
`docker run` without `-d` reads. A container made with `-i` or `-t` is attached by
`dockerapi.attach` instead (its main process's streams, stdin included); here what the client
sends is dropped (the container's stdin is not open), as Docker does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from cellplane.dockerapi import views
from cellplane.dockerapi.base import (
    EndpointContext,
    blocking,
    context,
    flag,
    match_ref,
    principal,
    resolve,
    settle,
)
from cellplane.dockerapi.mapping import AUTO_REMOVE_LABEL, Refused
from cellplane.errors import Conflict, NotFound
from cellplane.metrics import DOCKER_WAITS
from cellplane.services import agent_proxy, cell_access, cells, docker_resources
from cellplane.services.context import Principal

__all__ = [
    "RAW_STREAM",
    "HalfClose",
    "attach",
    "attached",
    "ran_since",
    "routes",
    "state_of",
    "watch_auto_remove",
]

log = structlog.get_logger("cellplane.dockerapi")

RAW_STREAM = "application/vnd.docker.raw-stream"
_ENDED = ("exited", "dead")
_WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
#: Exit codes of the `--rm` containers this process removed (the newest, bounded): a
#: `wait condition=removed` that only sees the container gone still answers its exit code.
_REMOVED_CODES: OrderedDict[str, int] = OrderedDict()
_REMOVED_KEPT = 1000
_REMOVERS: set[asyncio.Task[None]] = set()
#: Cell id -> the attaches relaying its output now: a `--rm` container is removed only once
#: they are done (as dockerd does), or its output could be cut off, or never opened at all.
_ATTACHED: dict[str, int] = {}
#: How long a `--rm` removal waits for the attaches of its container to finish.
ATTACH_DRAIN_S = 30.0


@contextlib.contextmanager
def attached(cell_id: str) -> Iterator[None]:
    """An attach of the cell relays its output meanwhile (see `_ATTACHED`)."""
    _ATTACHED[cell_id] = _ATTACHED.get(cell_id, 0) + 1
    try:
        yield
    finally:
        _ATTACHED[cell_id] -= 1
        if not _ATTACHED[cell_id]:
            del _ATTACHED[cell_id]


async def _attaches_done(cell_id: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _ATTACHED.get(cell_id) and loop.time() < deadline:
        await asyncio.sleep(0.05)


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "" or (name == "tail" and raw == "all"):
        return default
    try:
        return int(float(raw))
    except ValueError as exc:
        raise Refused(400, f"invalid value for {name!r}: {raw!r}") from exc


async def _open(
    ctx: EndpointContext,
    p: Principal,
    cell_id: str,
    *,
    tail: int | None,
    follow: bool,
    timestamps: bool = False,
    since: int = 0,
    stdout: bool = True,
    stderr: bool = True,
) -> AsyncIterator[bytes] | None:
    """The cell's framed log stream, None when it has no container (yet, or any more)."""
    try:
        target = await blocking(cell_access.locate, ctx.svc, p, cell_id)
    except (Conflict, NotFound):
        return None
    return await agent_proxy.open_docker_logs(
        ctx.agent,
        target,
        tail=tail,
        follow=follow,
        timestamps=timestamps,
        since=since,
        stdout=stdout,
        stderr=stderr,
    )


async def logs(request: web.Request) -> web.StreamResponse:
    ctx, p = context(request), principal(request)
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    if not (stdout or stderr):
        raise Refused(400, "Bad parameters: you must choose at least one stream")
    if _int_param(request, "until", 0):
        raise Refused(400, "logs --until is not supported on this endpoint yet")
    follow = flag(request, "follow")
    tail = _int_param(request, "tail", None)
    since = _int_param(request, "since", 0) or 0
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    chunks = await _open(
        ctx,
        p,
        cell["id"],
        tail=tail,
        follow=follow,
        timestamps=flag(request, "timestamps"),
        since=since,
        stdout=stdout,
        stderr=stderr,
    )
    resp = web.StreamResponse(status=200, headers={"Content-Type": RAW_STREAM})
    await resp.prepare(request)
    if chunks is not None:
        try:
            async for chunk in chunks:
                await resp.write(chunk)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
    await resp.write_eof()
    return resp


def _started_marker(cell: dict[str, Any]) -> tuple[int, str | None]:
    started = [e["at"] for e in cell.get("events") or [] if e["type"] in ("started", "restarted")]
    return len(started), started[-1] if started else None


def ran_since(first: dict[str, Any], cell: dict[str, Any]) -> bool:
    """Whether the container started (again) after `first` was seen: a new start event, or a
    started container where there was none (one that ended before its start was reported)."""
    if _started_marker(cell) != _started_marker(first):
        return True
    return not views.has_run(first) and views.has_run(cell)


async def _wait_for(
    ctx: EndpointContext,
    cell: dict[str, Any],
    condition: str,
    gone: Callable[[], bool] = lambda: False,
) -> int | None:
    """The exit code once `condition` holds (Docker's `wait`), woken by the cell's topic; None
    once `gone()` says nobody waits any more. `cell` and what is read on each of its changes
    are its state views (`docker_resources.state_view`), compared with each other."""
    topic = f"cell:{cell['id']}"
    first = last = cell
    while not gone():
        seen = ctx.svc.notifier.version(topic)
        now = await blocking(docker_resources.state_view, ctx.svc, cell["id"])
        if now is None:
            return _REMOVED_CODES.get(cell["id"], int(last.get("exit_code") or 0))
        last = now
        state = views.docker_state(now)
        if (
            condition == "not-running"
            and state in (*_ENDED, "created")
            and not (state == "created" and now["desired_state"] == "RUNNING")
        ):
            return int(now.get("exit_code") or 0)
        ended = state in _ENDED or now["state"] == "FAILED"
        if condition == "next-exit" and ended and ran_since(first, now):
            return int(now.get("exit_code") or 0)
        await ctx.svc.notifier.wait(topic, seen, 2.0)
    return None


def state_of(ctx: EndpointContext, ref: str) -> dict[str, Any]:
    """A container's state view by reference (`base.match_ref`: in this endpoint's project
    only); Docker's 404 when there is none."""
    cell_id = match_ref(ref, docker_resources.cell_refs(ctx.svc, ctx.project_id))
    found = docker_resources.state_view(ctx.svc, cell_id)
    if found is None:
        raise Refused(404, f"No such container: {ref.removeprefix('/')}")
    return found


def _hung_up(request: web.Request) -> Callable[[], bool]:
    """Whether the client closed the request's connection. `docker run -d` sends a `wait`,
    then exits once the container runs: its wait would read the cell every two seconds for as
    long as the container lives (aiohttp does not cancel the handler of a closed connection)."""
    return lambda: request.transport is None or request.transport.is_closing()


async def wait(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    condition = request.query.get("condition") or "not-running"
    if condition not in _WAIT_CONDITIONS:
        raise Refused(
            400, f"invalid condition {condition!r} (one of {', '.join(_WAIT_CONDITIONS)})"
        )
    cell = await blocking(state_of, ctx, request.match_info["ref"])
    # Headers first, as Docker does: the client knows the wait is in place before it starts.
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    with DOCKER_WAITS.track_inprogress():
        code = await _wait_for(ctx, cell, condition, _hung_up(request))
    if code is None:
        return resp
    with contextlib.suppress(ConnectionError):  # the client went away meanwhile
        await resp.write(b'{"StatusCode":%d,"Error":null}\n' % code)
        await resp.write_eof()
    return resp


def watch_auto_remove(ctx: EndpointContext, p: Principal, before: dict[str, Any]) -> None:
    """After the start of a `--rm` container (`before`: its state view before the start),
    remove it once it has exited, as Docker's AutoRemove does. Nothing for other containers."""
    if (before.get("labels") or {}).get(AUTO_REMOVE_LABEL) != "true":
        return
    task = asyncio.get_running_loop().create_task(_auto_remove(ctx, p, before))
    _REMOVERS.add(task)
    task.add_done_callback(_REMOVERS.discard)


def _delete(ctx: EndpointContext, p: Principal, cell_id: str) -> str:
    with ctx.svc.db.session() as s:
        out = cells.delete(ctx.svc, s, p, cell_id)
    ctx.svc.notifier.publish(*out.topics)
    return str(out.body["id"])


async def _auto_remove(ctx: EndpointContext, p: Principal, before: dict[str, Any]) -> None:
    try:
        code = await _wait_for(ctx, before, "next-exit")
        assert code is not None  # (it waits until the exit: nobody here hangs up)
        await _attaches_done(before["id"], ATTACH_DRAIN_S)  # its output relayed first
        _REMOVED_CODES[before["id"]] = code
        while len(_REMOVED_CODES) > _REMOVED_KEPT:
            _REMOVED_CODES.popitem(last=False)
        try:
            task_id = await blocking(_delete, ctx, p, before["id"])
        except (Conflict, NotFound):  # removed meanwhile, or its removal is under way
            return
        await settle(ctx, p, task_id, 300.0)
    except Exception:
        log.exception("removing a --rm container failed", cell=before["id"])


class _Output(asyncio.Protocol):
    """The hijacked connection's reader: the container's standard input is not open, so what
    the client sends is dropped; `closed` is set when the connection is gone."""

    def __init__(self, tls: bool) -> None:
        self.closed = asyncio.Event()
        self.tls = tls

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        # The docker CLI half-closes its side; the output goes on. (Under TLS the answer is
        # the TLS layer's, see HalfClose.)
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


class HalfClose:
    """Keep a hijacked TLS connection writable after the client's half-close.

    The docker CLI ends its side right after the 101 when it has no standard input to send
    (Go's `tls.Conn.CloseWrite`: a close_notify alert). asyncio's TLS layer answers any
    close_notify, or a TCP FIN, by shutting the whole connection down, which would cut the
    container's output. For this one connection, those two reactions are suspended until
    :meth:`release`; then closing the transport shuts TLS down as usual. (asyncio offers no
    public switch for TLS half-close; this touches its `SSLProtocol` instance only.)
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.protocol: Any = getattr(transport, "_ssl_protocol", None)
        if self.protocol is not None:
            self.protocol._start_shutdown = lambda: None
            self.protocol.eof_received = lambda: True

    @property
    def tls(self) -> bool:
        return self.protocol is not None

    def release(self) -> None:
        if self.protocol is not None:
            del self.protocol._start_shutdown  # the class's own methods again
            del self.protocol.eof_received


async def attach(request: web.Request) -> web.StreamResponse:
    ctx, p = context(request), principal(request)
    if not flag(request, "stream") and not flag(request, "logs"):
        raise Refused(400, "attach needs stream=1 or logs=1")
    stdout, stderr = flag(request, "stdout"), flag(request, "stderr")
    cell = await blocking(resolve, ctx, p, request.match_info["ref"])
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp"
    resp = web.StreamResponse(
        status=101 if upgrade else 200,
        headers={
            "Content-Type": RAW_STREAM,
            **({"Connection": "Upgrade", "Upgrade": "tcp"} if upgrade else {}),
        },
    )
    transport = request.transport
    if transport is None:
        return resp
    # Before the 101 goes out: the client half-closes as soon as it reads it.
    guard = HalfClose(transport)
    out = _Output(guard.tls)
    transport.set_protocol(out)
    try:
        with attached(cell["id"]):
            await resp.prepare(request)
            await _relay_attached(ctx, p, cell, transport, out, stdout=stdout, stderr=stderr)
    finally:
        guard.release()
        transport.close()
    return resp


async def _relay_attached(
    ctx: EndpointContext,
    p: Principal,
    cell: dict[str, Any],
    transport: asyncio.BaseTransport,
    out: _Output,
    *,
    stdout: bool,
    stderr: bool,
) -> None:
    """Wait for the container to exist (attach comes before start), then relay its followed
    output until it ends or the client goes."""
    topic = f"cell:{cell['id']}"
    first = cell
    while not out.closed.is_set():
        seen = ctx.svc.notifier.version(topic)
        try:
            cell = await blocking(cells.get, ctx.svc, p, cell["id"])
        except NotFound:
            return
        if views.has_run(cell) and (
            ran_since(first, cell) or views.docker_state(cell) == "running"
        ):
            break
        if cell["state"] == "FAILED" or cell["desired_state"] == "DELETED":
            return
        await ctx.svc.notifier.wait(topic, seen, 1.0)
    if not (stdout or stderr) or out.closed.is_set():
        return
    # A container that ran before (`start -a`): its output from this start on (to the second).
    since = 0
    started = _started_marker(cell)[1]
    if views.has_run(first) and started:
        since = int(datetime.fromisoformat(started).timestamp())
    try:
        chunks = await _open(
            ctx, p, cell["id"], tail=None, follow=True, since=since, stdout=stdout, stderr=stderr
        )
    except (agent_proxy.AgentRefused, agent_proxy.AgentUnreachable) as exc:
        # The connection is the client's stream by now: no error answer can go on it.
        log.warning(
            "attach: the container's output cannot be read", cell=cell["id"], error=str(exc)
        )
        return
    if chunks is None:
        return
    writer: Any = transport
    try:
        async for chunk in chunks:
            if out.closed.is_set():
                break
            writer.write(chunk)
    finally:
        with contextlib.suppress(Exception):
            await chunks.aclose()  # type: ignore[attr-defined]


def routes() -> list[tuple[str, str, Any]]:
    return [
        ("GET", "/containers/{ref}/logs", logs),
        ("POST", "/containers/{ref}/wait", wait),
    ]
