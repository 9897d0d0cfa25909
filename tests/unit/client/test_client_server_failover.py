"""Several server URLs (replicas): parsing, the failover order, the configuration's `servers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cellplane.client import CellplaneError, Client
from cellplane.client import config as client_config
from cellplane.server_urls import ServerRotation, parse_servers


def test_urls_are_split_trimmed_and_kept_once_in_order() -> None:
    assert parse_servers(" http://a:7400/, https://b:7401 ,,http://a:7400") == [
        "http://a:7400",
        "https://b:7401",
    ]
    assert parse_servers(["http://a:1"]) == ["http://a:1"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no server URL"),
        ("ftp://a:1", "must be http:// or https://"),
        ("http://a:1,a:2", "'a:2' must be http"),
        ("http://a:99999", "not a valid URL"),
        ("http://a:1/?x=1", "query"),
    ],
)
def test_bad_urls_are_named(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_servers(value)


def test_rotation_moves_on_round_the_list_once_per_failed_server() -> None:
    r = ServerRotation(["http://a:1", "http://b:2", "http://c:3"])
    assert r.current == "http://a:1"
    assert r.failed("http://a:1/") == "http://b:2"
    # a second request that also failed on a: b is not skipped
    assert r.failed("http://a:1") == "http://b:2"
    assert r.failed("http://b:2") == "http://c:3"
    assert r.failed("http://c:3") == "http://a:1"
    assert len(r) == 3


def test_one_server_stays_itself() -> None:
    r = ServerRotation(["http://a:1"])
    assert r.failed("http://a:1") == "http://a:1"


def test_the_sdk_refuses_a_bad_list_by_name() -> None:
    with pytest.raises(CellplaneError, match="'nope' must be http"):
        Client("http://a:1,nope", "t")


def test_config_servers_list_and_comma_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"servers": ["http://a:1", "http://b:2"], "token": "t"}))
    monkeypatch.setenv("CELLPLANE_CONFIG", str(path))
    monkeypatch.delenv("CELLPLANE_SERVER", raising=False)
    monkeypatch.delenv("CELLPLANE_TOKEN", raising=False)
    assert client_config.load_config().server == "http://a:1,http://b:2"
    monkeypatch.setenv("CELLPLANE_SERVER", "http://c:3, http://d:4/")
    assert client_config.load_config().server == "http://c:3,http://d:4"
    monkeypatch.delenv("CELLPLANE_SERVER")
    path.write_text(json.dumps({"servers": "http://a:1"}))
    with pytest.raises(client_config.ConfigError, match="'servers' must be a non-empty list"):
        client_config.load_config()
    path.write_text(json.dumps({"servers": ["http://a:1", "mailto:x"]}))
    with pytest.raises(client_config.ConfigError, match="'mailto:x' must be http"):
        client_config.load_config()


def test_a_client_moves_to_the_next_replica_when_one_refuses_connections() -> None:
    """A real listener behind the second URL; nothing listens behind the first."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    server = HTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        live = f"http://127.0.0.1:{server.server_port}"
        with Client(f"http://127.0.0.1:{dead},{live}", "t", retries=0, backoff=0) as c:
            assert c.health() == {"status": "ok"}
            assert c.server_url == live
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
