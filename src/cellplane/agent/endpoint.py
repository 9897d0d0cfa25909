"""The agent's own small HTTP endpoint: logs and exec of the cells on this host, and the copy of
volumes between hosts (`agent.volume_transfer`: ``/volumes/{name}/archive``, ``/volumes/{name}``).

The server proxies `GET /v1/cells/{id}/logs` and `POST /v1/cells/{id}/exec` here, presenting the
secret the agent gave it at registration; the interactive exec (`GET /v1/cells/{id}/exec` as a
WebSocket) comes as `POST /cells/{id}/attach` with `Upgrade: cellplane-exec/1`, answered 101 and
then relayed by `agent.exec_relay` (docs/exec.md). Standard library only: it serves a handful of
requests and must not add to the agent's memory.
"""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import structlog

from cellplane.agent import container_ops
from cellplane.agent.build import Builder
from cellplane.agent.endpoint_tls import EndpointTLS, TLSServer
from cellplane.agent.exec_relay import open_session, relay
from cellplane.agent.net_ops import NetworkAttach
from cellplane.agent.registry_ops import RegistryOps
from cellplane.agent.volume_transfer import VolumeTransfer
from cellplane.drivers.base import Driver
from cellplane.drivers.errors import ContainerNotFound, DriverError
from cellplane.wire import exec as exec_wire

__all__ = ["AgentEndpoint"]

log = structlog.get_logger("cellplane.agent.endpoint")
_REGISTRY = ("/pulls", "/pushes", "/commits")  # agent.registry_ops


class AgentEndpoint:
    def __init__(
        self,
        driver: Driver,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        volumes: VolumeTransfer | None = None,
        builder: Builder | None = None,
        tls_dir: Path | None = None,
        networks: NetworkAttach | None = None,
        registry: RegistryOps | None = None,
    ) -> None:
        """``tls_dir``: serve HTTPS with the host certificate there, asking for the server's
        client certificate (`agent.endpoint_tls`); None: plain HTTP (a `--no-tls` deployment)."""
        endpoint = self
        transfer = volumes or VolumeTransfer(driver)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _auth(self) -> bool:
                got = self.headers.get("Authorization", "")
                if hmac.compare_digest(got, f"Bearer {secret}"):
                    return True
                self._json(401, {"error": "unauthorized"})
                return False

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _cell(self) -> tuple[str, str] | None:
                parts = urlparse(self.path).path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "cells":
                    return parts[1], parts[2]
                self._json(404, {"error": "not found"})
                return None

            def _volume(self) -> str | None:
                path = urlparse(self.path).path.strip("/")
                return path.removeprefix("volumes/") if path.startswith("volumes/") else None

            def _volume_path(self) -> str | None:
                """The path after /volumes/ of an authorised request (None: answered)."""
                if not self._auth():
                    return None
                path = self._volume()
                if path is None:
                    self._json(404, {"error": "not found"})
                return path

            def do_PUT(self) -> None:
                if self.path.startswith("/cells/"):
                    if self._auth() and (target := self._cell()) is not None:
                        container_ops.put(self, driver, *target)
                    return
                if (path := self._volume_path()) is not None:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    transfer.put(self, path, headers)  # type: ignore[arg-type]

            def do_HEAD(self) -> None:
                if self._auth() and (target := self._cell()) is not None:
                    container_ops.head(self, driver, *target)

            def do_DELETE(self) -> None:
                if (path := self._volume_path()) is not None:
                    transfer.delete(self, path)  # type: ignore[arg-type]

            def _builds(self) -> str | None:
                path = urlparse(self.path).path
                return (
                    path.removeprefix("/builds").strip("/") if path.startswith("/builds") else None
                )

            def do_GET(self) -> None:
                if not self._auth():
                    return
                if builder is not None and (build_id := self._builds()):
                    builder.get(self, build_id)
                    return
                if (path := self._volume()) is not None:
                    transfer.get(self, path)  # type: ignore[arg-type]
                    return
                if (target := self._cell()) is None:
                    return
                cell_id, what = target
                if what in container_ops.GETS:
                    container_ops.get(self, driver, cell_id, what)
                    return
                if what != "logs":
                    self._json(404, {"error": "not found"})
                    return
                q = parse_qs(urlparse(self.path).query)
                tail = int(q["tail"][0]) if "tail" in q else None
                follow = q.get("follow", ["false"])[0] == "true"
                started = False
                try:
                    if q.get("format", [""])[0] == "docker":
                        chunks = driver.docker_logs(
                            f"cp-{cell_id}",
                            tail=tail,
                            follow=follow,
                            timestamps=q.get("timestamps", ["false"])[0] == "true",
                            since=int(q.get("since", ["0"])[0]),
                            stdout=q.get("stdout", ["true"])[0] == "true",
                            stderr=q.get("stderr", ["true"])[0] == "true",
                        )
                    else:
                        chunks = driver.logs(f"cp-{cell_id}", tail=tail, follow=follow)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    started = True
                    for chunk in chunks:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except DriverError as e:  # ContainerNotFound among them
                    if started:
                        # An answer is under way: an error answer written into it would read as
                        # the log's own bytes. The stream ends without its last chunk instead,
                        # which the reader sees as a broken stream, and the connection closes.
                        log.warning("log stream broken", cell=cell_id, error=str(e))
                        self.close_connection = True
                    elif isinstance(e, ContainerNotFound):
                        self._json(404, {"error": f"no container for cell {cell_id}"})
                    else:
                        self._json(502, {"error": str(e)})

            def do_POST(self) -> None:
                if not self._auth():
                    return
                if builder is not None and self._builds() == "":
                    builder.post(self, parse_qs(urlparse(self.path).query))
                    return
                if registry is not None and (what := urlparse(self.path).path) in _REGISTRY:
                    registry.post(self, what.strip("/"), parse_qs(urlparse(self.path).query))
                    return
                if (target := self._cell()) is None:
                    return
                cell_id, what = target
                length = int(self.headers.get("Content-Length") or 0)
                if what == "attach":
                    self._attach(cell_id, self.rfile.read(length))
                    return
                if what in container_ops.POSTS:
                    container_ops.post(self, driver, cell_id, what, self.rfile.read(length))
                    return
                if what == "network" and networks is not None:
                    networks.post(self, cell_id, self.rfile.read(length))
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    command = [str(c) for c in body["command"]]
                except (ValueError, KeyError, TypeError):
                    self._json(400, {"error": 'body must be {"command": [...]}'})
                    return
                if what != "exec":
                    self._json(404, {"error": "not found"})
                    return
                try:
                    res = driver.exec(f"cp-{cell_id}", command)
                except ContainerNotFound:
                    self._json(404, {"error": f"no container for cell {cell_id}"})
                    return
                except DriverError as e:
                    self._json(502, {"error": str(e)})
                    return
                self._json(
                    200,
                    {"exit_code": res.exit_code, "output": res.output.decode("utf-8", "replace")},
                )

            def _attach(self, cell_id: str, raw: bytes) -> None:
                if self.headers.get("Upgrade", "").lower() != exec_wire.UPGRADE:
                    self._json(400, {"error": f"attach needs 'Upgrade: {exec_wire.UPGRADE}'"})
                    return
                try:
                    session = open_session(driver, f"cp-{cell_id}", json.loads(raw or b"{}"))
                except ValueError as e:  # the body's (JSON's own errors are ValueErrors too)
                    self._json(400, {"error": str(e)})
                    return
                except ContainerNotFound:
                    self._json(404, {"error": f"no container for cell {cell_id}"})
                    return
                except DriverError as e:
                    self._json(502, {"error": str(e)})
                    return
                self.send_response(101)
                self.send_header("Connection", "Upgrade")
                self.send_header("Upgrade", exec_wire.UPGRADE)
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                relay(session, self.rfile, self.connection)

        self._server = (
            TLSServer((host, port), Handler, EndpointTLS(tls_dir))
            if tls_dir is not None
            else ThreadingHTTPServer((host, port), Handler)
        )
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cp-endpoint", daemon=True
        )
        scheme = "https" if tls_dir is not None else "http"
        self.url = f"{scheme}://{host}:{self._server.server_address[1]}"
        _ = endpoint

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
