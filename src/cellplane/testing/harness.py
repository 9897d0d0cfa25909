"""A real Cellplane deployment in a temporary directory, for integration tests and benchmarks.

Starts `cellplane server` and `cellplane agent` as separate processes (exactly as `cellplane up`
does) on a dynamically chosen port, with their own podman engine under the data directory, and tears
everything down again: containers, engine, mounts, files. Processes can be killed with SIGKILL and
restarted to test crash safety.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from cellplane.client import Client

__all__ = ["Deployment", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Deployment:
    """Server + agent + engine. Use as a context manager, or call `start()` and `close()`."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        database_url: str | None = None,
        agent_name: str | None = None,
        agent_args: list[str] | None = None,
        log_level: str = "warning",
        tls: bool = False,
        listen_host: str = "127.0.0.1",
    ) -> None:
        # Short paths: the engine's unix socket path must stay under 108 bytes.
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
        self.database_url = database_url
        self.port = free_port()
        # tls: HTTPS with the deployment's CA (as `cellplane up`); `ca_file` is its root PEM.
        self.tls = tls
        self.ca_file: Path | None = None
        # listen_host: e.g. the dev hosts' underlay address (`cellplane.devhosts`), so that agents
        # in other network namespaces reach the server.
        self.listen_host = listen_host
        self.url = f"{'https' if tls else 'http'}://{listen_host}:{self.port}"
        self.agent_name = agent_name or f"h-{self.port}"
        self.agent_args = agent_args or []
        self.log_level = log_level
        self.server_proc: subprocess.Popen[bytes] | None = None
        self.agent_proc: subprocess.Popen[bytes] | None = None
        self.admin_token = ""
        self.join_file = self.data_dir / "server" / "join-token"
        self._logs: list[object] = []

    # --- processes ---

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CELLPLANE_LOG_LEVEL"] = self.log_level
        if self.database_url:
            env["CELLPLANE_DATABASE_URL"] = self.database_url
        return env

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.data_dir / log_name).open("ab")
        self._logs.append(log)
        return subprocess.Popen(
            [sys.executable, "-m", "cellplane.daemon", *args],
            stdout=log,
            stderr=log,
            env=self._env(),
            start_new_session=True,
        )

    def prepare(self) -> None:
        from cellplane.daemon import prepare

        token, self.join_file = prepare(self.data_dir, self.database_url)
        if token:
            self.admin_token = token

    def start_server(self, timeout: float = 60.0) -> None:
        if not self.admin_token:
            self.prepare()
        args = ["server", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        args += ["--host", self.listen_host]
        if self.tls:
            from cellplane.daemon import ca_bundle

            self.ca_file = ca_bundle(self.data_dir)
            args.append("--tls")
        self.server_proc = self._spawn(args, "server.log")
        verify = self.verify
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail('server.log')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1, verify=verify).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server not ready: {self.log_tail('server.log')}")

    def start_agent(self, timeout: float = 60.0) -> None:
        self.agent_proc = self._spawn(
            [
                "agent",
                "--server",
                self.url,
                "--join-token-file",
                str(self.join_file),
                "--data-dir",
                str(self.data_dir),
                "--name",
                self.agent_name,
                *(["--ca-file", str(self.ca_file)] if self.ca_file else []),
                *self.agent_args,
            ],
            "agent.log",
        )
        self.wait_host_ready(timeout)

    def wait_host_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                if self.agent_proc is not None and self.agent_proc.poll() is not None:
                    raise RuntimeError(f"agent exited: {self.log_tail('agent.log')}")
                hosts = c.list_hosts()["items"]
                if any(h["name"] == self.agent_name and h["state"] == "READY" for h in hosts):
                    return
                time.sleep(0.1)
        raise RuntimeError(f"agent did not register: {self.log_tail('agent.log')}")

    def start(self) -> Deployment:
        self.start_server()
        self.start_agent()
        return self

    @staticmethod
    def _end(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 30) -> None:
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill_server(self) -> None:
        self._end(self.server_proc, signal.SIGKILL)

    def stop_server(self) -> None:
        self._end(self.server_proc, signal.SIGTERM)

    def kill_agent(self) -> None:
        self._end(self.agent_proc, signal.SIGKILL)

    def stop_agent(self) -> None:
        self._end(self.agent_proc, signal.SIGTERM)

    def pids(self) -> list[int]:
        return [p.pid for p in (self.server_proc, self.agent_proc) if p and p.poll() is None]

    # --- access ---

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What verifies this server: the deployment's root with TLS (httpx's `verify=`)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.url, self.admin_token, timeout=timeout, verify=self.verify)

    @property
    def engine_dir(self) -> Path:
        return self.data_dir / "agent" / "engine"

    @property
    def engine_url(self) -> str:
        return f"unix://{self.engine_dir / 'podman.sock'}"

    def log_tail(self, name: str, limit: int = 3000) -> str:
        try:
            return (self.data_dir / name).read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    # --- teardown ---

    def close(self) -> None:
        from cellplane.testing.teardown import remove_engine, unmount_under

        self.stop_agent()
        self.stop_server()
        remove_engine(self.data_dir)
        if self._own_dir:
            unmount_under(self.data_dir)
        for log in self._logs:
            with contextlib.suppress(Exception):
                log.close()  # type: ignore[attr-defined]
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Deployment:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
