"""The server's clients of agents (`services.agent_tls`) against a real agent endpoint over mutual
TLS on loopback (`agent.endpoint_tls`): the pinned leaf is the only certificate trusted, the
agent asks for the server's client certificate, a revoked host is not contacted, a renewed host
certificate is served from the next connection, and plain HTTP stays for `--no-tls` agents."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from cellplane.agent.endpoint import AgentEndpoint
from cellplane.drivers.fake import FakeDriver
from cellplane.identity import pki
from cellplane.ids import utcnow
from cellplane.services import agent_proxy, agent_tls
from cellplane.services.bootstrap import seed
from cellplane.services.context import Services
from cellplane.state.db import Database, migrate
from cellplane.state.models import Host

SECRET = "s3cret"
AUTH = {"Authorization": f"Bearer {SECRET}"}


@dataclass
class Agent:
    svc: Services
    endpoint: AgentEndpoint
    tls_dir: Path

    def set_host(self, **fields: object) -> None:
        with self.svc.db.session() as s:
            h = s.get(Host, "hst-1")
            assert h is not None
            for k, v in fields.items():
                setattr(h, k, v)

    def issue(self, host_id: str = "hst-1", name: str = "node1") -> dict[str, str]:
        """A new certificate (and key) for a host, as its registration would issue it."""
        with self.svc.db.session() as s:
            return pki.issue_host_certificate(
                self.svc, s, host_id, name, None, addresses=["127.0.0.1"]
            )

    def install(self, cert: dict[str, str]) -> None:
        """The agent keeps `cert` (its files) and the server pins it."""
        (self.tls_dir / "host.key").write_text(cert["key"])
        (self.tls_dir / "host.pem").write_text(cert["chain"])
        self.set_host(cert_pem=cert["certificate"])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    migrate(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    seed(Services(db=db, data_dir=path.parent / "data"))  # the default tenant
    db.dispose()
    return path


@pytest.fixture
def agent(tmp_path: Path, template: Path) -> Iterator[Agent]:
    db_path = tmp_path / "cellplane.db"
    db_path.write_bytes(template.read_bytes())
    svc = Services(db=Database(f"sqlite:///{db_path}"), data_dir=tmp_path / "data")
    tls_dir = tmp_path / "agent-tls"
    tls_dir.mkdir()
    endpoint = AgentEndpoint(FakeDriver(), SECRET, tls_dir=tls_dir)
    endpoint.start()
    with svc.db.session() as s:
        s.add(
            Host(
                id="hst-1",
                name="node1",
                address="127.0.0.1",
                agent_url=endpoint.url,
                token_hash="x",
                state="READY",
                cpu=1.0,
                memory_mb=512,
                disk_gb=1,
                revision=1,
                created_at=utcnow(),
                last_heartbeat=utcnow(),
            )
        )
    a = Agent(svc, endpoint, tls_dir)
    a.install(a.issue())
    try:
        yield a
    finally:
        endpoint.stop()
        svc.db.dispose()


def _logs(client: httpx.Client, agent: Agent) -> int:
    return client.get(f"{agent.endpoint.url}/cells/cel-x/logs", headers=AUTH).status_code


def test_the_pinned_agent_answers_the_servers_client(agent: Agent) -> None:
    assert agent.endpoint.url.startswith("https://127.0.0.1:")
    with agent_tls.sync_client(agent.svc) as client:
        assert _logs(client, agent) == 404  # the agent's answer: no such container
        assert client.get(f"{agent.endpoint.url}/cells/cel-x/logs").status_code == 401


def test_a_caller_without_the_servers_client_certificate_is_refused(agent: Agent) -> None:
    with httpx.Client(verify=False) as anonymous, pytest.raises(httpx.HTTPError):
        _logs(anonymous, agent)
    # A host certificate (TLS client and server) is not the server's: refused too.
    other = agent.issue("hst-2", "node2")
    (agent.tls_dir.parent / "o.pem").write_text(other["chain"])
    (agent.tls_dir.parent / "o.key").write_text(other["key"])
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.load_cert_chain(agent.tls_dir.parent / "o.pem", agent.tls_dir.parent / "o.key")
    with httpx.Client(verify=ctx) as host_cert, pytest.raises(httpx.HTTPError):
        _logs(host_cert, agent)


def test_only_the_pinned_leaf_is_trusted(agent: Agent) -> None:
    # The server pins another certificate of the same CA (e.g. the host renewed meanwhile).
    agent.set_host(cert_pem=agent.issue("hst-2", "node2")["certificate"])
    with agent_tls.sync_client(agent.svc) as client, pytest.raises(httpx.ConnectError) as e:
        _logs(client, agent)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)


def test_a_revoked_host_is_not_contacted(agent: Agent) -> None:
    agent.set_host(revoked_at=utcnow())
    with agent_tls.sync_client(agent.svc) as client, pytest.raises(httpx.ConnectError) as e:
        _logs(client, agent)
    assert "no pinned certificate" in str(e.value) and "revoked" in str(e.value)
    target = (agent.endpoint.url, SECRET, "cel-x")
    with pytest.raises(agent_proxy.AgentUnreachable, match="no pinned certificate"):
        asyncio.run(
            agent_proxy.open_exec(
                target, ["true"], stdin=False, tty=False, size=None, svc=agent.svc
            )
        )


def test_a_renewed_certificate_is_served_without_a_restart(agent: Agent) -> None:
    with agent_tls.sync_client(agent.svc) as client:
        assert _logs(client, agent) == 404
        agent.install(agent.issue())  # the agent's renewal; the server pins the new leaf
        assert _logs(client, agent) == 404


def test_the_async_client_and_the_raw_exec_upgrade_use_the_pin(agent: Agent) -> None:
    async def run() -> tuple[int, str]:
        async with agent_tls.async_client(agent.svc) as client:
            status = (
                await client.get(f"{agent.endpoint.url}/cells/cel-x/logs", headers=AUTH)
            ).status_code
        target = (agent.endpoint.url, SECRET, "cel-x")
        with pytest.raises(agent_proxy.AgentRefused) as refused:
            await agent_proxy.open_exec(
                target, ["true"], stdin=False, tty=False, size=None, svc=agent.svc
            )
        return status, str(refused.value)

    status, refusal = asyncio.run(run())
    assert status == 404
    assert "no container for cell cel-x" in refusal  # the agent's own answer, over TLS


def test_plain_http_agents_are_reached_as_before(tmp_path: Path, template: Path) -> None:
    db_path = tmp_path / "plain.db"
    db_path.write_bytes(template.read_bytes())
    svc = Services(db=Database(f"sqlite:///{db_path}"), data_dir=tmp_path / "data")
    endpoint = AgentEndpoint(FakeDriver(), SECRET)
    endpoint.start()
    try:
        assert endpoint.url.startswith("http://")
        with agent_tls.sync_client(svc) as client:
            status = client.get(f"{endpoint.url}/cells/cel-x/logs", headers=AUTH).status_code
        assert status == 404
        assert not (tmp_path / "data" / "identity" / "tls" / "agent-client.pem").exists()
    finally:
        endpoint.stop()
        svc.db.dispose()
