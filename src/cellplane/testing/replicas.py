"""Several `cellplane server` replicas on one PostgreSQL database, and one agent, for the
replica tests and `bench/leader_failover.py`.

The replicas share the data directory (keys, CA, images), as replicas on one machine do, and
each listens on a port of its own; the agent and the clients get every replica's URL
(comma-separated) and fail over between them. A replica can be killed (SIGKILL), paused
(SIGSTOP) and resumed; `close` ends them all and removes the deployment (`harness.Deployment`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from types import TracebackType

import httpx

from cellplane.client import Client
from cellplane.testing.harness import Deployment, free_port

__all__ = ["Replicas"]


class Replicas:
    """``count`` servers on ``database_url`` (PostgreSQL) and, with `start(agent=True)`, an agent
    that knows them all."""

    def __init__(self, database_url: str, count: int = 2, *, log_level: str = "warning") -> None:
        if count < 1:
            raise ValueError("at least one replica")
        self.deployment = Deployment(database_url=database_url, log_level=log_level)
        self.ports = [self.deployment.port] + [free_port() for _ in range(count - 1)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._logs: list[object] = []

    @property
    def servers(self) -> str:
        """Every replica's URL, comma-separated (what agents and clients are given)."""
        return ",".join(self.urls)

    @property
    def token(self) -> str:
        return self.deployment.admin_token

    def _spawn_server(self, i: int) -> subprocess.Popen[bytes]:
        d = self.deployment
        log = (d.data_dir / f"server-{i}.log").open("ab")
        self._logs.append(log)
        env = dict(os.environ)
        env["CELLPLANE_LOG_LEVEL"] = d.log_level
        env["CELLPLANE_DATABASE_URL"] = d.database_url or ""
        env["CELLPLANE_REPLICA_NAME"] = f"replica-{i}"
        args = ["server", "--data-dir", str(d.data_dir), "--port", str(self.ports[i])]
        return subprocess.Popen(
            [sys.executable, "-m", "cellplane.daemon", *args, "--host", "127.0.0.1"],
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )

    def start_server(self, i: int, timeout: float = 60.0) -> None:
        proc = self.procs[i] = self._spawn_server(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"replica {i} exited: {self.log_tail(i)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.urls[i]}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"replica {i} not ready: {self.log_tail(i)}")

    def start(self, *, agent: bool = True) -> Replicas:
        """Start the replicas in order (the first one up becomes the leader), then the agent."""
        self.deployment.prepare()  # migrate and seed once, before the replicas race to
        for i in range(len(self.ports)):
            self.start_server(i)
        if agent:
            self.start_agent()
        return self

    def start_agent(self, first: int = 0) -> None:
        """The agent, talking to replica ``first`` until it fails, then to the next ones."""
        order = self.urls[first:] + self.urls[:first]
        # argparse keeps the last --server: the agent gets them all.
        self.deployment.agent_args = [*self.deployment.agent_args, "--server", ",".join(order)]
        self.deployment.start_agent()

    def client(self, timeout: float = 30.0, retries: int = 3) -> Client:
        return Client(self.servers, self.token, timeout=timeout, retries=retries)

    def leader(self, i: int, timeout: float = 10.0) -> dict[str, object]:
        """What replica ``i`` answers at GET /v1/system/leader."""
        r = httpx.get(
            f"{self.urls[i]}/v1/system/leader",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )
        r.raise_for_status()
        data: dict[str, object] = r.json()
        return data

    def leading(self, timeout: float = 1.0) -> list[int]:
        """The live replicas that say they lead (a paused one is skipped: it cannot answer
        within ``timeout``)."""
        out = []
        for i, proc in enumerate(self.procs):
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(httpx.HTTPError):
                if self.leader(i, timeout)["leading"]:
                    out.append(i)
        return out

    def signal(self, i: int, sig: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            if sig == signal.SIGKILL:
                proc.wait(10)

    def kill(self, i: int) -> None:
        self.signal(i, signal.SIGKILL)

    def log_tail(self, i: int, limit: int = 3000) -> str:
        return self.deployment.log_tail(f"server-{i}.log", limit)

    def close(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a paused one cannot end otherwise
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        try:
            self.deployment.close()
        finally:
            for log in self._logs:
                with contextlib.suppress(Exception):
                    log.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Replicas:
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
