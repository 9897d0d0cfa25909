"""The agent's container-operation routes (`agent.container_ops`) on its real HTTP endpoint, over
the fake driver: what it answers when the engine cannot, and the checks made before the engine."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from cellplane.agent.endpoint import AgentEndpoint
from cellplane.drivers.base import Signals
from cellplane.drivers.errors import ContainerNotFound, DriverError
from cellplane.drivers.fake import FakeDriver

SECRET = "s3cret"
AUTH = {"Authorization": f"Bearer {SECRET}"}


@pytest.fixture
def agent() -> Iterator[tuple[str, FakeDriver]]:
    driver = FakeDriver()
    ep = AgentEndpoint(driver, SECRET)
    ep.start()
    try:
        yield ep.url, driver
    finally:
        ep.stop()


def test_an_engine_without_the_operations_answers_501(agent: tuple[str, FakeDriver]) -> None:
    url, _ = agent
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
        for method, what in [("GET", "archive"), ("GET", "stats"), ("GET", "top")]:
            r = c.request(method, f"/cells/cel_x/{what}", params={"path": "/tmp"})
            assert r.status_code == 501, (what, r.text)
            assert r.json()["kind"] == "engine"
        assert c.head("/cells/cel_x/archive", params={"path": "/tmp"}).status_code == 501
        r = c.put("/cells/cel_x/archive", params={"path": "/tmp"}, content=b"x" * 1024)
        assert r.status_code == 501
        assert c.post("/cells/cel_x/pause").status_code == 501
        assert c.post("/cells/cel_x/signal", json={"signal": 1}).status_code == 501


def test_bad_requests_are_refused_before_the_engine(agent: tuple[str, FakeDriver]) -> None:
    url, driver = agent
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/cells/cel_x/archive", params={"path": "/tmp"}).status_code == 401
        r = c.post("/cells/cel_x/limits", headers=AUTH, json={"cpu": "lots"})
        assert r.status_code == 400 and "memory_mb" in r.json()["error"]
        # A missing container: 404, kind container (the fake driver has none).
        r = c.post("/cells/cel_x/limits", headers=AUTH, json={"cpu": 0.5, "memory_mb": 64})
        assert r.status_code == 404 and r.json()["kind"] == "container"
        for body in ({}, {"signal": "HUP"}, {"signal": 0}, {"signal": 65}, {"signal": True}):
            r = c.post("/cells/cel_x/signal", headers=AUTH, json=body)
            assert r.status_code == 400 and '{"signal": N}' in r.json()["error"], (body, r.text)
    assert [name for name, _ in driver.calls] == ["apply_limits"]


class _Signalled(FakeDriver):
    """The fake driver with signals (`drivers.base.Signals`): recorded; a container it does
    not have is not found. The engine's other container operations are not used here."""

    def __init__(self) -> None:
        super().__init__()
        self.signals: list[tuple[str, int]] = []

    def signal(self, container_id: str, number: int) -> None:
        if container_id != "cp-cel_here":
            raise ContainerNotFound(container_id)
        self.signals.append((container_id, number))


def test_a_signal_reaches_the_engine_for_the_cells_container() -> None:
    driver = _Signalled()
    assert isinstance(driver, Signals)
    ep = AgentEndpoint(driver, SECRET)
    ep.start()
    try:
        with httpx.Client(base_url=ep.url, headers=AUTH, timeout=10) as c:
            assert c.post("/cells/cel_here/signal", json={"signal": 10}).status_code == 200
            r = c.post("/cells/cel_gone/signal", json={"signal": 1})
            assert r.status_code == 404 and r.json()["kind"] == "container"
    finally:
        ep.stop()
    assert driver.signals == [("cp-cel_here", 10)]


class _BreakingLogs(FakeDriver):
    """A driver whose log stream gives one line, then fails as an engine connection that drops."""

    def logs(
        self, container_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        if container_id == "cp-cel_gone":
            raise ContainerNotFound("no such container")

        def lines() -> Iterator[bytes]:
            yield b"first line\n"
            raise DriverError("the engine closed the stream")

        return lines()


def test_a_log_stream_that_breaks_ends_broken_not_with_an_error_answer_inside() -> None:
    """Once the 200 and some log bytes are out, an engine error must not be written into the
    stream as an error answer (a lenient reader would take it for log output): the chunked body
    ends without its last chunk and the connection closes, which a reader sees as a broken
    stream. Before any byte, a missing container is still a 404."""
    ep = AgentEndpoint(_BreakingLogs(), SECRET)
    ep.start()
    try:
        with httpx.Client(base_url=ep.url, headers=AUTH, timeout=10) as c:
            assert c.get("/cells/cel_gone/logs").status_code == 404
        url = urlsplit(ep.url)
        with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
            sock.sendall(
                b"GET /cells/cel_x/logs HTTP/1.1\r\nHost: agent\r\n"
                b"Authorization: Bearer " + SECRET.encode() + b"\r\n\r\n"
            )
            raw = bytearray()
            while part := sock.recv(65536):  # EOF: the agent closed the connection
                raw += part
        head, _, body = bytes(raw).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head, head
        assert body == b"b\r\nfirst line\n\r\n"  # one chunk; no last chunk, nothing else
    finally:
        ep.stop()
