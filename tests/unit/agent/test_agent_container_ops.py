"""The agent's container-operation routes (`agent.container_ops`) on its real HTTP endpoint, over
the fake driver: what it answers when the engine cannot, and the checks made before the engine."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cellplane.agent.endpoint import AgentEndpoint
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


def test_bad_requests_are_refused_before_the_engine(agent: tuple[str, FakeDriver]) -> None:
    url, driver = agent
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/cells/cel_x/archive", params={"path": "/tmp"}).status_code == 401
        r = c.post("/cells/cel_x/limits", headers=AUTH, json={"cpu": "lots"})
        assert r.status_code == 400 and "memory_mb" in r.json()["error"]
        # A missing container: 404, kind container (the fake driver has none).
        r = c.post("/cells/cel_x/limits", headers=AUTH, json={"cpu": 0.5, "memory_mb": 64})
        assert r.status_code == 404 and r.json()["kind"] == "container"
    assert [name for name, _ in driver.calls] == ["apply_limits"]
