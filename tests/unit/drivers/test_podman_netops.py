"""`PodmanNetworkOps` against a scripted engine: the libpod bodies and how refusals are read."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from cellplane.drivers import errors
from cellplane.drivers.podman_netops import PodmanNetworkOps, connect_body


class _Answer(requests.Response):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__()
        self.status_code = status
        self._content = json.dumps(body).encode()


class _Engine:
    base_url = "http://engine"
    timeout = 5

    def __init__(self, post: _Answer, inspect: dict[str, Any] | None = None) -> None:
        self.answer, self.inspect = post, inspect or {}
        self.posts: list[tuple[str, dict[str, Any]]] = []

    def post(self, url: str, json: dict[str, Any], timeout: float) -> _Answer:
        self.posts.append((url, json))
        return self.answer

    def get(self, url: str, timeout: float) -> _Answer:
        return _Answer(200, self.inspect)


def _ops(engine: _Engine) -> PodmanNetworkOps:
    ops = PodmanNetworkOps()
    ops._untyped = engine
    return ops


def test_connect_sends_the_address_and_names() -> None:
    assert connect_body("cp-1", "10.128.0.9", ["web"]) == {
        "container": "cp-1",
        "aliases": ["web"],
        "static_ips": ["10.128.0.9"],
    }
    assert "static_ips" not in connect_body("cp-1", None, [])
    engine = _Engine(_Answer(200, "OK"))
    _ops(engine).connect_network("cp-1", "cp-net-b", None, ["web"])
    assert engine.posts == [
        (
            "http://engine/v4.0.0/libpod/networks/cp-net-b/connect",
            connect_body("cp-1", None, ["web"]),
        )
    ]


def test_refusals_are_read() -> None:
    missing = _Engine(_Answer(404, {"cause": "no such container"}))
    with pytest.raises(errors.ContainerNotFound):
        _ops(missing).connect_network("cp-1", "n", None, [])
    other = _Engine(_Answer(500, {"cause": "something broke"}))
    with pytest.raises(errors.PermanentDriverError, match="something broke"):
        _ops(other).connect_network("cp-1", "n", None, [])
    # Disconnecting from a network it is not on is what was asked.
    _ops(
        _Engine(_Answer(500, {"cause": "container is not connected to network n"}))
    ).disconnect_network("cp-1", "n")
