"""The server's one way into a cell through its host agent: exec a command, stream its logs.

Called by :mod:`cellplane.api.routes_cells` (``POST /v1/cells/{id}/exec`` and
``GET /v1/cells/{id}/logs``, on the app's shared ``httpx.AsyncClient``) and by the cluster
executor (:mod:`cellplane.controller.clusters`, readiness probes, joins and config pushes, on its
own ``httpx.Client`` in worker threads). The agent's URL layout, its bearer secret, the timeouts
and the reading of its answers live here once; the caller brings the transport (sync or async)
and the target from :func:`cellplane.services.cell_access.locate`.

Failures are :class:`~cellplane.errors.Conflict` subclasses, so the API maps them to 409 as
before, and they carry what a caller needs to word its own message:
:class:`AgentUnreachable` (no answer) and :class:`AgentRefused` (an answer other than 200).

This module knows httpx (the transport) but not Starlette: streaming the logs to an HTTP client
is the route's job; :func:`open_logs` hands it an async iterator of bytes. The interactive exec
(:func:`open_exec`) is a raw socket to the agent after an HTTP upgrade, which httpx does not do:
asyncio streams carry it, and :class:`AgentExec` speaks the frames of :mod:`cellplane.wire.exec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import httpx

from cellplane.errors import Conflict
from cellplane.services import agent_tls
from cellplane.services.context import Services
from cellplane.wire import exec as exec_wire

__all__ = [
    "AgentExec",
    "AgentRefused",
    "AgentUnreachable",
    "Target",
    "exec_async",
    "exec_sync",
    "network_change",
    "open_attach",
    "open_container_op",
    "open_docker_logs",
    "open_exec",
    "open_logs",
]

Target = tuple[str, str | None, str]
"""(agent url, agent secret, cell id): what :func:`cellplane.services.cell_access.locate` returns."""


class AgentUnreachable(Conflict):
    """The cell's host agent did not answer (connection refused, timeout...)."""

    def __init__(self, cause: httpx.HTTPError) -> None:
        super().__init__(f"the cell's host agent is unreachable: {cause}")
        self.cause = cause


class AgentRefused(Conflict):
    """The agent answered, but not with 200; ``agent_status`` and ``text`` are its answer (the
    API answers 409, whatever the agent's status was)."""

    def __init__(self, detail: str, status: int, text: str) -> None:
        super().__init__(detail)
        self.agent_status = status
        self.text = text


def _headers(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _exec_request(
    client: httpx.Client | httpx.AsyncClient, target: Target, command: list[str], timeout: float
) -> httpx.Request:
    url, secret, cid = target
    return client.build_request(
        "POST",
        f"{url}/cells/{cid}/exec",
        json={"command": command},
        headers=_headers(secret),
        # The agent's own exec timeout, plus the time to answer.
        timeout=timeout + 5,
    )


def _exec_answer(resp: httpx.Response) -> dict[str, Any]:
    if resp.status_code != 200:
        raise AgentRefused(
            f"exec failed on the host: {resp.text[:500]}", resp.status_code, resp.text
        )
    data: dict[str, Any] = resp.json()
    return data


def exec_sync(
    client: httpx.Client, target: Target, command: list[str], timeout: float
) -> dict[str, Any]:
    """Run `command` in the cell, blocking: the agent's answer (``exit_code``, ``output``)."""
    try:
        resp = client.send(_exec_request(client, target, command, timeout))
    except httpx.HTTPError as e:
        raise AgentUnreachable(e) from e
    return _exec_answer(resp)


async def exec_async(
    client: httpx.AsyncClient, target: Target, command: list[str], timeout: float
) -> dict[str, Any]:
    """:func:`exec_sync` on an async client (the API's)."""
    try:
        resp = await client.send(_exec_request(client, target, command, timeout))
    except httpx.HTTPError as e:
        raise AgentUnreachable(e) from e
    return _exec_answer(resp)


async def open_logs(
    client: httpx.AsyncClient, target: Target, *, tail: int | None, follow: bool
) -> AsyncIterator[bytes]:
    """Open the cell's log stream on its agent; the bytes as they come, until the agent ends it.

    The stream is opened before this returns (so an unreachable agent or a refusal raises here,
    before any response is sent); the iterator closes the agent's response when it ends or is
    closed.
    """
    params: dict[str, Any] = {"follow": "true" if follow else "false"}
    if tail is not None:
        params["tail"] = tail
    return await _open_logs(client, target, params)


async def open_docker_logs(
    client: httpx.AsyncClient,
    target: Target,
    *,
    tail: int | None,
    follow: bool,
    timestamps: bool,
    since: int,
    stdout: bool,
    stderr: bool,
) -> AsyncIterator[bytes]:
    """:func:`open_logs` in the Docker Engine API's framing (8-byte headers naming stdout or
    stderr, optional timestamps), for the Docker-compatible endpoint (`cellplane.dockerapi`)."""

    def flag(v: bool) -> str:
        return "true" if v else "false"

    params: dict[str, Any] = {
        "format": "docker",
        "follow": flag(follow),
        "timestamps": flag(timestamps),
        "stdout": flag(stdout),
        "stderr": flag(stderr),
    }
    if tail is not None:
        params["tail"] = tail
    if since:
        params["since"] = since
    return await _open_logs(client, target, params)


async def _open_logs(
    client: httpx.AsyncClient, target: Target, params: dict[str, Any]
) -> AsyncIterator[bytes]:
    url, secret, cid = target
    req = client.build_request(
        "GET",
        f"{url}/cells/{cid}/logs",
        params=params,
        headers=_headers(secret),
        timeout=httpx.Timeout(10, read=None),
    )
    try:
        resp = await client.send(req, stream=True)
    except httpx.HTTPError as e:
        raise AgentUnreachable(e) from e
    if resp.status_code != 200:
        await resp.aclose()
        raise AgentRefused(
            f"the cell's host agent answered {resp.status_code} for its logs",
            resp.status_code,
            "",
        )

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        finally:
            await resp.aclose()

    return relay()


class AgentExec:
    """An interactive exec attached on the agent (`POST /cells/{id}/attach`, upgraded): frames
    of :mod:`cellplane.wire.exec` both ways, over a plain socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = exec_wire.FrameReader()

    async def send(self, channel: int, payload: bytes) -> None:
        self._writer.write(exec_wire.pack(channel, payload))
        await self._writer.drain()

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        """The agent's frames (stdout, stderr, then status) until it closes the connection."""
        while data := await self._reader.read(65536):
            for frame in self._frames.feed(data):
                yield frame

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def open_exec(
    target: Target,
    command: list[str],
    *,
    stdin: bool,
    tty: bool,
    size: tuple[int, int] | None,
    timeout: float = 15.0,
    svc: Services | None = None,
    user: str | None = None,
    env: list[str] | None = None,
    workdir: str | None = None,
) -> AgentExec:
    """Start `command` in the cell on its agent, attached: the session once the agent has said
    101 (so a missing container or a refusal raises here, before the client's WebSocket is
    accepted). `svc` gives the pinned TLS of an ``https://`` agent (`services.agent_tls`).
    `user`, `env` ("K=V"), `workdir`: the process's, when given (`docker exec -u/-e/-w`)."""
    fields: dict[str, Any] = {
        "command": command,
        "stdin": stdin,
        "tty": tty,
        "size": list(size) if size else None,
    }
    extra = {"user": user, "env": env, "workdir": workdir}
    fields |= {k: v for k, v in extra.items() if v}
    return await _open_session(target, fields, timeout, "exec", svc)


async def open_attach(
    target: Target,
    *,
    stdin: bool,
    logs: bool,
    timeout: float = 15.0,
    svc: Services | None = None,
) -> AgentExec:
    """Attach to the cell's main process on its agent (Docker's attach): its output (with
    `logs`, from its start) and, with `stdin`, its standard input, as the frames of an exec
    session; closing the session detaches (the process goes on)."""
    fields = {"main": True, "stdin": stdin, "logs": logs}
    return await _open_session(target, fields, timeout, "attach", svc)


async def _open_session(
    target: Target, fields: dict[str, Any], timeout: float, what: str, svc: Services | None
) -> AgentExec:
    url, secret, cid = target
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.port:
        raise AgentRefused(f"the cell's host agent has an unusable address {url!r}", 0, "")
    tls: ssl.SSLContext | None = None
    if parsed.scheme == "https":
        if svc is None:
            raise AgentRefused(f"no TLS towards the agent at {url} (a caller without it)", 0, "")
        try:
            tls = await anyio.to_thread.run_sync(agent_tls.ssl_for, svc, url)
        except httpx.ConnectError as e:
            raise AgentUnreachable(e) from e
    body = json.dumps(fields).encode()
    request = (
        f"POST /cells/{cid}/attach HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
        f"Authorization: Bearer {secret}\r\nConnection: Upgrade\r\n"
        f"Upgrade: {exec_wire.UPGRADE}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parsed.hostname, parsed.port, ssl=tls, server_hostname="" if tls else None
            )
            writer.write(request)
            await writer.drain()
            status, headers = await _read_head(reader)
            if status == 101:
                return AgentExec(reader, writer)
            length = int(headers.get("content-length") or 0)
            text = (await reader.readexactly(length)).decode("utf-8", "replace") if length else ""
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
        if writer is not None:
            writer.close()
        cause = httpx.ConnectError(str(e) or type(e).__name__)
        raise AgentUnreachable(cause) from e
    writer.close()
    try:
        reason = str(json.loads(text).get("error") or text)
    except (ValueError, AttributeError):
        reason = text
    raise AgentRefused(f"{what} failed on the host: {reason[:500]}", status, text)


async def open_container_op(
    client: httpx.AsyncClient,
    target: Target,
    method: str,
    what: str,
    *,
    params: dict[str, str] | None = None,
    json_body: dict[str, Any] | None = None,
    content: AsyncIterator[bytes] | None = None,
    length: int | None = None,
    read_timeout: float | None = 60.0,
) -> httpx.Response:
    """One of the agent's container operations (``/cells/{id}/archive|stats|top|pause|unpause|
    limits``, `agent.container_ops`), for the Docker-compatible endpoint: the agent's answer,
    open (the caller streams its body and closes it). `content` is streamed to the agent with its
    `length`. Refusals raise :class:`AgentRefused` whose ``text`` is the agent's error kind
    (``container``, ``path``, ``engine``) and whose message is the agent's own."""
    url, secret, cid = target
    headers = _headers(secret)
    if length is not None:
        headers["Content-Length"] = str(length)
    req = client.build_request(
        method,
        f"{url}/cells/{cid}/{what}",
        params=params,
        json=json_body,
        content=content,
        headers=headers,
        timeout=httpx.Timeout(10, read=read_timeout, write=read_timeout),
    )
    try:
        resp = await client.send(req, stream=True)
    except httpx.HTTPError as e:
        raise AgentUnreachable(e) from e
    if resp.status_code < 300:
        return resp
    kind = resp.headers.get("X-Cellplane-Error-Kind", "")
    try:
        body = json.loads(await resp.aread())
        detail, kind = str(body.get("error")), str(body.get("kind") or kind)
    except (ValueError, AttributeError, httpx.HTTPError):
        detail = f"the cell's host agent answered {resp.status_code}"
    finally:
        await resp.aclose()
    raise AgentRefused(detail, resp.status_code, kind)


async def network_change(
    client: httpx.AsyncClient, target: Target, body: dict[str, Any]
) -> dict[str, Any] | None:
    """Tell the cell's agent to connect or disconnect its container (`agent.net_ops`): its answer
    (``address``: the engine's on a connected network), None when the cell has no container there
    (it joins every network when it is made); AgentRefused / AgentUnreachable otherwise."""
    url, secret, cid = target
    try:
        resp = await client.post(
            f"{url}/cells/{cid}/network", json=body, headers=_headers(secret), timeout=60
        )
    except httpx.HTTPError as e:
        raise AgentUnreachable(e) from e
    if resp.status_code == 200:
        try:
            done = resp.json()
        except ValueError:
            done = {}
        return done if isinstance(done, dict) else {}
    try:
        answer = resp.json()
        reason, kind = str(answer.get("error") or resp.text), str(answer.get("kind") or "")
    except (ValueError, AttributeError):
        reason, kind = resp.text, ""
    if resp.status_code == 404 and kind == "container":
        return None
    raise AgentRefused(
        f"network {body.get('action')} failed on the host: {reason[:500]}", resp.status_code, kind
    )
