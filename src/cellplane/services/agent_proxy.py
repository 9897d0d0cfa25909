"""The server's one way into a cell through its host agent: exec a command, stream its logs.

Called by :mod:`cellplane.api.routes_cells` (``POST /v1/cells/{id}/exec`` and
``GET /v1/cells/{id}/logs``, on the app's shared ``httpx.AsyncClient``) and by the cluster
executor (:mod:`cellplane.controller.clusters`, readiness probes, joins and config pushes, on its
own ``httpx.Client`` in worker threads). The agent's URL layout, its bearer secret, the timeouts
and the reading of its answers live here once; the caller brings the transport (sync or async)
and the target from :func:`cellplane.services.cells.locate`.

Failures are :class:`~cellplane.errors.Conflict` subclasses, so the API maps them to 409 as
before, and they carry what a caller needs to word its own message:
:class:`AgentUnreachable` (no answer) and :class:`AgentRefused` (an answer other than 200).

This module knows httpx (the transport) but not Starlette: streaming the logs to an HTTP client
is the route's job; :func:`open_logs` hands it an async iterator of bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from cellplane.errors import Conflict

__all__ = [
    "AgentRefused",
    "AgentUnreachable",
    "Target",
    "exec_async",
    "exec_sync",
    "open_docker_logs",
    "open_logs",
]

Target = tuple[str, str | None, str]
"""(agent url, agent secret, cell id): what :func:`cellplane.services.cells.locate` returns."""


class AgentUnreachable(Conflict):
    """The cell's host agent did not answer (connection refused, timeout...)."""

    def __init__(self, cause: httpx.HTTPError) -> None:
        super().__init__(f"the cell's host agent is unreachable: {cause}")
        self.cause = cause


class AgentRefused(Conflict):
    """The agent answered, but not with 200; ``status`` and ``text`` are its answer."""

    def __init__(self, detail: str, status: int, text: str) -> None:
        super().__init__(detail)
        self.status = status
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
