"""services/agent_proxy: the one way the server execs in a cell or reads its logs via its agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from cellplane.services import agent_proxy

TARGET = ("http://agent.test:7401", "s3cret", "cel-1")


def _agent(request: httpx.Request) -> httpx.Response:
    assert request.headers["authorization"] == "Bearer s3cret"
    if request.url.path == "/cells/cel-1/exec":
        body = json.loads(request.content)
        if body["command"] == ["false"]:
            return httpx.Response(500, text="no such container")
        return httpx.Response(200, json={"exit_code": 0, "output": " ".join(body["command"])})
    if request.url.path == "/cells/cel-1/logs":
        assert request.url.params["follow"] == "false"
        assert request.url.params["tail"] == "5"
        return httpx.Response(200, content=b"line 1\nline 2\n")
    return httpx.Response(404)


def test_exec_sync_answers_refuses_and_reports_an_unreachable_agent() -> None:
    with httpx.Client(transport=httpx.MockTransport(_agent)) as client:
        answer = agent_proxy.exec_sync(client, TARGET, ["echo", "hi"], 5)
        assert answer == {"exit_code": 0, "output": "echo hi"}
        with pytest.raises(agent_proxy.AgentRefused) as refused:
            agent_proxy.exec_sync(client, TARGET, ["false"], 5)
    assert (refused.value.agent_status, refused.value.text) == (500, "no such container")
    assert refused.value.status == 409  # what the API answers
    assert refused.value.detail == "exec failed on the host: no such container"

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with (
        httpx.Client(transport=httpx.MockTransport(down)) as client,
        pytest.raises(agent_proxy.AgentUnreachable) as unreachable,
    ):
        agent_proxy.exec_sync(client, TARGET, ["true"], 5)
    assert unreachable.value.detail == ("the cell's host agent is unreachable: connection refused")


class _Agent(httpx.AsyncBaseTransport):
    """An agent that streams (httpx's MockTransport reads every answer before handing it over)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        answer = _agent(request)
        if request.url.path.endswith("/logs"):
            body = answer.content

            async def chunks() -> AsyncIterator[bytes]:
                yield body[:7]
                yield body[7:]

            return httpx.Response(answer.status_code, content=chunks())
        return answer


def test_exec_async_and_logs_on_the_api_client() -> None:
    async def run() -> tuple[dict[str, object], bytes]:
        async with httpx.AsyncClient(transport=_Agent()) as client:
            answer = await agent_proxy.exec_async(client, TARGET, ["id"], 5)
            chunks = await agent_proxy.open_logs(client, TARGET, tail=5, follow=False)
            data = b"".join([c async for c in chunks])
            return answer, data

    answer, data = asyncio.run(run())
    assert answer == {"exit_code": 0, "output": "id"}
    assert data == b"line 1\nline 2\n"


def test_docker_logs_ask_the_agent_for_dockers_framing() -> None:
    seen: list[httpx.QueryParams] = []
    frame = b"\x02\x00\x00\x00\x00\x00\x00\x04err\n"

    class Agent(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.url.params)

            async def chunks() -> AsyncIterator[bytes]:
                yield frame

            return httpx.Response(200, content=chunks())

    async def run() -> bytes:
        async with httpx.AsyncClient(transport=Agent()) as client:
            chunks = await agent_proxy.open_docker_logs(
                client,
                TARGET,
                tail=None,
                follow=True,
                timestamps=True,
                since=1700000000,
                stdout=False,
                stderr=True,
            )
            return b"".join([c async for c in chunks])

    assert asyncio.run(run()) == frame  # relayed as the engine framed it
    assert dict(seen[0]) == {
        "format": "docker",
        "follow": "true",
        "timestamps": "true",
        "stdout": "false",
        "stderr": "true",
        "since": "1700000000",
    }
