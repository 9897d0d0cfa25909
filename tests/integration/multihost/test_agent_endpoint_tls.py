"""The agent's endpoint over mutual TLS, on three namespace hosts with real podman each: it answers
only the server's client certificate (none, plain HTTP, another CA's, another host's: refused in
the handshake), logs and exec (plain and streamed) still work through the server, and a revoked
host's endpoint is no longer used."""

from __future__ import annotations

import socket
import sqlite3
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.integration.multihost.conftest import IMAGE, SMALL, ThreeHosts, wait_for

from cellplane import devhosts
from cellplane.client import CellplaneError
from cellplane.identity.ca import CertificateAuthority
from cellplane.testing.waits import SLEEP, finish, unique

pytestmark = pytest.mark.integration


def _endpoint(three: ThreeHosts, host_id: str) -> tuple[str, int]:
    """The agent endpoint's address of a host, as the server recorded it at registration."""
    db = three.data_dir / "server" / "cellplane.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (url,) = conn.execute("SELECT agent_url FROM hosts WHERE id = ?", (host_id,)).fetchone()
    assert str(url).startswith("https://"), url
    parts = urlsplit(str(url))
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def _ask(where: tuple[str, int], cert: tuple[Path, Path] | None, *, tls: bool = True) -> bytes:
    """The first bytes of the endpoint's answer to a request (b"" when it refused)."""
    request = b"GET /cells/none/logs HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # this test is the client being checked, not the agent
    if cert is not None:
        ctx.load_cert_chain(*cert)
    try:
        with socket.create_connection(where, timeout=15) as raw:
            if not tls:
                raw.sendall(request)
                return raw.recv(64)
            with ctx.wrap_socket(raw) as conn:
                conn.sendall(request)
                return conn.recv(64)
    except (ssl.SSLError, OSError):
        return b""


def _other_ca_client(tmp: Path) -> tuple[Path, Path]:
    """A client certificate with the server's own name, from a CA of another deployment."""
    other = CertificateAuthority.create("other", time.time())
    issued = other.system.issue("cellplane-server", profile="client", ttl_s=3600, now=time.time())
    cert, key = tmp / "other.pem", tmp / "other.key"
    cert.write_text(issued.chain_pem)
    key.write_text(issued.key_pem)
    return cert, key


def _running_cell(three: ThreeHosts, **kw: object) -> dict[str, object]:
    c = three.client
    spec: dict[str, object] = {"command": SLEEP, **SMALL, **kw}
    task = c.create_cell("default", unique("tls"), IMAGE, **spec)  # type: ignore[arg-type]
    assert finish(c, task["id"])["state"] == "COMPLETED"
    cid = task["entity"]["id"]
    return wait_for(lambda: (cell := c.get_cell(cid))["state"] == "RUNNING" and cell, what=cid)


def test_the_agent_endpoint_answers_only_the_servers_client_certificate(
    three_hosts: ThreeHosts, tmp_path: Path
) -> None:
    c = three_hosts.client
    cell = _running_cell(three_hosts, command=["sh", "-c", "echo cell-says-hi; exec sleep 600"])
    cid = str(cell["id"])
    try:
        # Through the server (pinned mutual TLS): logs, exec, and the streamed exec.
        assert wait_for(lambda: "cell-says-hi" in list(c.cell_logs(cid)), what="the cell's log")
        assert c.exec_cell(cid, ["echo", "hello"]) == {"exit_code": 0, "output": "hello\n"}
        session = c.exec_stream(cid, ["sh", "-c", "echo streamed"])
        out = b"".join(chunk for _, chunk in session.output())
        assert out == b"streamed\n" and session.exit_code == 0, (out, session.status)
        session.close()
        # With stdin: the agent reads the server's frames while it writes the output, on the
        # same TLS connection.
        session = c.exec_stream(cid, ["sh"], stdin=True)
        session.send_stdin(b"echo from-stdin; echo done >&2\n")
        session.close_stdin()
        got = {name: b"" for name in ("stdout", "stderr")}
        for name, chunk in session.output():
            got[name] += chunk
        assert got == {"stdout": b"from-stdin\n", "stderr": b"done\n"}, got
        assert session.exit_code == 0, session.status
        session.close()

        where = _endpoint(three_hosts, str(cell["host"]))
        server_tls = three_hosts.data_dir / "server" / "identity" / "tls"
        own = (server_tls / "agent-client.pem", server_tls / "agent-client.key")
        # The server's certificate gets an HTTP answer (401: the bearer secret is asked too).
        assert _ask(where, own).startswith(b"HTTP/1.1 401")
        # No certificate, plain HTTP, another CA's, another host's: no HTTP answer at all.
        assert _ask(where, None) == b""
        assert not _ask(where, None, tls=False).startswith(b"HTTP/")
        assert _ask(where, _other_ca_client(tmp_path)) == b""
        by_id = {r["id"]: n for n, r in three_hosts.host_rows().items()}
        other = next(n for n in three_hosts.hosts if n != by_id[str(cell["host"])])
        tls_dir = devhosts.get_host(three_hosts.data_dir, other).data_dir / "agent" / "tls"
        assert _ask(where, (tls_dir / "host.pem", tls_dir / "host.key")) == b""
    finally:
        finish(c, c.delete_cell(cid)["id"])


def test_a_revoked_hosts_endpoint_is_no_longer_used(three_hosts: ThreeHosts) -> None:
    c, d = three_hosts.client, three_hosts.deployment
    # Restart policy never: the cell stays on its host when the host goes DOWN.
    cell = _running_cell(three_hosts, restart={"policy": "never"})
    cid, host_id = str(cell["id"]), str(cell["host"])
    name = {r["id"]: n for n, r in three_hosts.host_rows().items()}[host_id]
    try:
        assert c.exec_cell(cid, ["echo", "before"])["output"] == "before\n"
        c.revoke_host(host_id)
        with pytest.raises(CellplaneError) as refused:
            list(c.cell_logs(cid))
        assert refused.value.status == 409
        assert "no pinned certificate" in str(refused.value), refused.value
        assert c.get_cell(cid)["host"] == host_id  # refused because of the revocation, not a move
    finally:
        # Back with a new join token (the other tests want three READY hosts).
        token = c.create_join_token(ttl_s=300, uses=1)["token"]
        devhosts.kill_agent(three_hosts.data_dir, name)
        devhosts.start_agent(
            three_hosts.data_dir, name, server_url=d.url, join_token=token, ca_file=d.ca_file
        )
        three_hosts.wait_state(name, "READY")
        finish(c, c.delete_cell(cid)["id"])
