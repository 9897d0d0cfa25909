"""The agent's server client with several replicas: a replica that refuses connections is
skipped at once; one that fails after the request left moves the next call on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from cellplane.agent.server_client import ServerClient, ServerUnavailable


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def live() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_heartbeat_goes_to_the_next_replica_when_the_first_refuses(live: str) -> None:
    client = ServerClient(f"{_dead_url()},{live}")
    client.host_id = "h1"
    try:
        client.heartbeat()  # no exception: answered by the live one
        assert client.base_url == live
    finally:
        client.close()


def test_every_replica_down_is_server_unavailable() -> None:
    client = ServerClient(f"{_dead_url()},{_dead_url()}")
    client.host_id = "h1"
    try:
        with pytest.raises(ServerUnavailable, match="heartbeat"):
            client.heartbeat()
    finally:
        client.close()


def test_a_bad_server_list_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'ftp://x' must be http"):
        ServerClient("http://a:1,ftp://x")
