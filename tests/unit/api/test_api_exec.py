"""The interactive exec WebSocket `GET /v1/cells/{id}/exec`, end to end in-process: the API
(TestClient) -> `services.agent_proxy.open_exec` -> a real `AgentEndpoint` on a loopback port
-> `agent.exec_relay` -> the fake driver's exec session. Refusals come before the handshake is
accepted, as problem documents."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cellplane_platform_support import Platform, event
from cellplane_tenancy_support import token_for
from sqlalchemy import select
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from cellplane.agent.endpoint import AgentEndpoint
from cellplane.drivers.base import ContainerSpec, ExecResult
from cellplane.drivers.fake import FakeDriver
from cellplane.sealing import AGENT_SECRET_COLUMN
from cellplane.state.models import Host, Tenant
from cellplane.wire import exec as wire

SECRET = "agent-secret"


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver(images=["host"])


@pytest.fixture
def agent(driver: FakeDriver) -> Iterator[AgentEndpoint]:
    endpoint = AgentEndpoint(driver, SECRET)
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


def _running_cell(plat: Platform, driver: FakeDriver, agent: AgentEndpoint, name: str) -> str:
    cid = str(plat.create_cell(name).json()["entity"]["id"])
    plat.schedule()
    container = driver.create(ContainerSpec(name=f"cp-{cid}", image="host"))
    driver.start(container)
    plat.report(
        {
            "cell_id": cid,
            "state": "RUNNING",
            "container_id": container,
            "events": [event("created"), event("started")],
        }
    )
    with plat.svc.db.session() as s:
        host = s.get(Host, plat.host_id)
        assert host is not None
        # As registration stores it: sealed (cellplane.sealing).
        host.agent_url = agent.url
        host.agent_secret = plat.svc.sealer.seal(SECRET, AGENT_SECRET_COLUMN)
    return cid


def _url(cid: str, *command: str, **flags: str) -> str:
    query = "&".join([f"command={c}" for c in command] + [f"{k}={v}" for k, v in flags.items()])
    return f"/v1/cells/{cid}/exec?{query}"


def _frames(ws: Any) -> list[tuple[int, bytes]]:
    frames = []
    while True:
        channel, payload = wire.decode_message(ws.receive_bytes())
        frames.append((channel, payload))
        if channel == wire.STATUS:
            return frames


def test_stdin_resize_output_and_exit_code_through_the_agent(
    plat: Platform, driver: FakeDriver, agent: AgentEndpoint
) -> None:
    cid = _running_cell(plat, driver, agent, "web")
    driver.exec_handler = lambda _c, cmd: ExecResult(3, bytes(driver.exec_sessions[-1].stdin))
    url = _url(cid, "sh", "-c", "cat", stdin="true", tty="true", cols="100", rows="30")
    with plat.client.websocket_connect(
        url, headers=plat.admin, subprotocols=[wire.SUBPROTOCOL]
    ) as ws:
        assert ws.accepted_subprotocol == wire.SUBPROTOCOL
        ws.send_bytes(wire.encode_message(wire.STDIN, b"hello "))
        ws.send_bytes(wire.encode_message(wire.STDIN, b"world"))
        ws.send_bytes(wire.encode_message(wire.RESIZE, wire.resize(80, 24)))
        ws.send_bytes(wire.encode_message(wire.CLOSE, wire.close_stdin()))
        frames = _frames(ws)
    assert frames[:-1] == [(wire.STDOUT, b"hello world")]
    assert wire.parse_status(frames[-1][1]) == wire.ExecStatus(3, None)
    [session] = driver.exec_sessions
    assert session.command == ["sh", "-c", "cat"]
    assert session.sizes == [(100, 30), (80, 24)]  # the first size comes with the start
    assert ("exec_open", (f"cp-{cid}", ["sh", "-c", "cat"], True, True, (100, 30))) in driver.calls

    audit = plat.client.get("/v1/audit", params={"action": "cell.exec"}, headers=plat.admin)
    [entry] = audit.json()["items"]
    assert entry["target"] == f"cell:{cid}"
    assert entry["detail"] == {"cell": "web", "command": ["sh", "-c", "cat"], "mode": "tty"}


def test_without_stdin_the_command_runs_at_once(
    plat: Platform, driver: FakeDriver, agent: AgentEndpoint
) -> None:
    cid = _running_cell(plat, driver, agent, "web")
    driver.exec_handler = lambda _c, cmd: ExecResult(0, " ".join(cmd).encode())
    with plat.client.websocket_connect(_url(cid, "echo", "hi"), headers=plat.admin) as ws:
        frames = _frames(ws)
    assert frames == [(wire.STDOUT, b"echo hi"), (wire.STATUS, wire.status(0, None))]


def _denied(plat: Platform, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        plat.client.websocket_connect(url, headers=headers or plat.admin),
    ):
        pass
    answer = denied.value
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = json.loads(answer.content)
    assert body["status"] == answer.status_code
    return body


def test_refusals_are_problem_documents_before_the_handshake(
    plat: Platform, driver: FakeDriver, agent: AgentEndpoint
) -> None:
    cid = _running_cell(plat, driver, agent, "web")
    assert _denied(plat, _url(cid, "true"), {"Authorization": "Bearer nope"})["status"] == 401
    assert _denied(plat, _url("cel-nosuch", "true"))["status"] == 404
    bad = _denied(plat, _url(cid, tty="maybe", cols="80"))
    assert bad["status"] == 422
    assert {e["field"] for e in bad["errors"]} == {"query.command", "query.tty", "query.cols"}

    # A stopped cell says so and how to start it; nothing reaches the agent.
    plat.client.post(f"/v1/cells/{cid}/stop", headers=plat.admin)
    plat.report({"cell_id": cid, "state": "STOPPED", "events": [event("stopped")]})
    stopped = _denied(plat, _url(cid, "true"))
    assert stopped["status"] == 409
    assert "is not running" in stopped["detail"] and "cellplane cell start web" in stopped["detail"]
    # The container gone behind the agent's back: the agent's refusal, named.
    other = _running_cell(plat, driver, agent, "other")
    driver.remove(f"cp-{other}")
    gone = _denied(plat, _url(other, "true"))
    assert gone["status"] == 409 and "no container for cell" in gone["detail"], gone
    assert driver.exec_sessions == []


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("text", "frames are binary messages"),
        (wire.encode_message(wire.STDOUT, b"x"), "does not send on channel 1"),
        (wire.encode_message(wire.RESIZE, b'{"cols": 0, "rows": 5}'), "cols must be 1-10000"),
        (b"\x09abc", "unknown channel 9"),
    ],
)
def test_a_client_breaking_the_protocol_is_closed_with_the_reason(
    plat: Platform, driver: FakeDriver, agent: AgentEndpoint, message: str | bytes, reason: str
) -> None:
    cid = _running_cell(plat, driver, agent, "web")
    with plat.client.websocket_connect(_url(cid, "cat", stdin="1"), headers=plat.admin) as ws:
        if isinstance(message, str):
            ws.send_text(message)
        else:
            ws.send_bytes(message)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
    assert closed.value.code == 1008
    assert reason in closed.value.reason
    # The agent's side was dropped too (by the agent's thread, soon): the session is closed.
    deadline = time.monotonic() + 10
    while not driver.exec_sessions[-1].closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert driver.exec_sessions[-1].closed


def test_a_stream_that_breaks_ends_with_a_status_naming_why(
    plat: Platform, driver: FakeDriver, agent: AgentEndpoint
) -> None:
    cid = _running_cell(plat, driver, agent, "web")

    def broken(_cell: str, _command: list[str]) -> ExecResult:
        raise RuntimeError("engine went away")

    driver.exec_handler = broken
    with plat.client.websocket_connect(_url(cid, "true"), headers=plat.admin) as ws:
        frames = _frames(ws)
    assert frames == [(wire.STATUS, wire.status(None, "exec stream failed: engine went away"))]


def test_exec_needs_cells_write_and_takes_issuer_tokens(
    plat: Platform, driver: FakeDriver, agent: AgentEndpoint
) -> None:
    cid = _running_cell(plat, driver, agent, "web")
    driver.exec_handler = lambda _c, cmd: ExecResult(0, b"ok")
    with plat.svc.db.reader() as s:
        tenant_id = str(s.scalar(select(Tenant.id).where(Tenant.name == "default")))
    headers = {}
    for role in ("project-viewer", "project-member"):
        user = plat.client.post("/v1/users", json={"name": role}, headers=plat.admin).json()
        r = plat.client.post(
            "/v1/role-assignments", json={"role": role, "user": role}, headers=plat.admin
        )
        assert r.status_code == 201, r.text
        headers[role] = token_for(plat, tenant_id, user["id"])  # issuer access tokens
    denied = _denied(plat, _url(cid, "true"), headers["project-viewer"])
    assert denied["status"] == 403 and "cells:write" in denied["detail"], denied
    with plat.client.websocket_connect(_url(cid, "true"), headers=headers["project-member"]) as ws:
        assert _frames(ws) == [(wire.STDOUT, b"ok"), (wire.STATUS, wire.status(0, None))]
