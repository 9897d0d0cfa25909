"""HTTPS and mutual TLS against a real deployment (`Deployment(tls=True)`, as `cellplane up`).

The server runs `python -m cellplane.daemon server --tls` with a certificate from the
deployment's own CA; the agent (`--ca-file`) and the SDK verify it with the CA's root only.
A user turns a CSR into a client certificate and calls the API with it and no bearer token (the
interactive exec's WebSocket included); revocation, foreign CAs and clients without the CA bundle
are refused.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cellplane.client import Client
from cellplane.identity.ca import CertificateAuthority
from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment

pytestmark = pytest.mark.integration

DAY = 86400.0


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with Deployment(tls=True) as d:
        yield d


@pytest.fixture(scope="module")
def me(deployment: Deployment) -> dict[str, Any]:
    with deployment.client() as c:
        return c.whoami()


def _bearer(d: Deployment) -> dict[str, str]:
    return {"Authorization": f"Bearer {d.admin_token}"}


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _mtls(d: Deployment, tmp: Path, chain_pem: str, key_pem: bytes) -> httpx.Client:
    """A client presenting ``chain_pem`` (leaf, intermediate) and verifying the server."""
    assert d.ca_file is not None
    (tmp / "chain.pem").write_text(chain_pem)
    (tmp / "key.pem").write_bytes(key_pem)
    ctx = ssl.create_default_context(cafile=str(d.ca_file))
    ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    return httpx.Client(base_url=d.url, verify=ctx, timeout=10)


def _obtain(d: Deployment, subject: str) -> tuple[dict[str, Any], bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    r = httpx.post(
        f"{d.url}/v1/certificates",
        json={"csr": csr, "ttl_days": 2},
        headers=_bearer(d),
        verify=d.verify,
    )
    assert r.status_code == 201, r.text
    return r.json(), _key_pem(key)


def test_the_server_is_verified_with_the_deployments_ca_only(
    deployment: Deployment, me: dict[str, Any]
) -> None:
    assert deployment.url.startswith("https://")
    assert me["name"] == "admin"
    # The system's trust store does not know our CA: verification fails.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{deployment.url}/readyz")
    # What the server presents chains to the published root and names 127.0.0.1.
    root = httpx.get(f"{deployment.url}/v1/ca", verify=deployment.verify).text
    assert deployment.ca_file is not None
    assert root == deployment.ca_file.read_text()


def test_the_agent_trusts_the_ca_and_holds_a_host_certificate(
    deployment: Deployment, tmp_path: Path
) -> None:
    with deployment.client() as c:
        (host,) = [h for h in c.list_hosts()["items"] if h["name"] == deployment.agent_name]
    assert host["state"] == "READY"
    tls = deployment.data_dir / "agent" / "tls"
    assert (tls / "host.key").stat().st_mode & 0o077 == 0
    chain = x509.load_pem_x509_certificates((tls / "host.pem").read_bytes())
    assert chain[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        deployment.agent_name
    )
    key = serialization.load_pem_private_key((tls / "host.key").read_bytes(), None)
    assert key.public_key() == chain[0].public_key()
    # The host certificate is a credential of that host on the agent routes (no host token).
    pem, key_bytes = (tls / "host.pem").read_text(), (tls / "host.key").read_bytes()
    with _mtls(deployment, tmp_path, pem, key_bytes) as client:
        r = client.get(f"/v1/agent/hosts/{host['id']}/assignments", params={"wait": 0})
        assert r.status_code == 200, r.text
        assert client.get("/v1/whoami").status_code == 403  # a host is not a user


def test_a_client_certificate_authenticates_until_revoked(
    deployment: Deployment, me: dict[str, Any], tmp_path: Path
) -> None:
    issued, key_pem = _obtain(deployment, me["subject"])
    with _mtls(deployment, tmp_path, issued["chain"], key_pem) as client:
        r = client.get("/v1/whoami")  # no Authorization header: the certificate speaks
        assert r.status_code == 200, r.text
        assert (r.json()["subject"], r.json()["name"]) == (me["subject"], "admin")
        r = httpx.post(
            f"{deployment.url}/v1/certificates/{issued['serial']}/revoke",
            headers=_bearer(deployment),
            verify=deployment.verify,
        )
        assert r.status_code == 200, r.text
        r = client.get("/v1/whoami")
        assert r.status_code == 401
        assert "revoked" in r.json()["detail"]
    # The CRL says so too.
    crl = x509.load_pem_x509_crl(
        httpx.get(
            f"{deployment.url}/v1/ca/crl", params={"tenant": "default"}, verify=deployment.verify
        ).content
    )
    assert crl.get_revoked_certificate_by_serial_number(int(issued["serial"], 16)) is not None


def test_a_certificate_from_another_ca_is_refused(
    deployment: Deployment, me: dict[str, Any], tmp_path: Path
) -> None:
    now = time.time()
    evil = CertificateAuthority.create("Cellplane", now)  # a look-alike, names and all
    evil.create_tenant("default", now)
    forged = evil.tenant("default").issue(me["subject"], profile="client", ttl_s=DAY, now=now)
    with _mtls(deployment, tmp_path, forged.chain_pem, forged.key_pem.encode()) as client:
        try:
            r = client.get("/v1/whoami")
        except httpx.TransportError:
            return  # the handshake refused it (unknown CA): the usual outcome
        assert r.status_code == 401, r.text


def test_a_plain_http_url_is_told_the_server_speaks_https(deployment: Deployment) -> None:
    """The issue's "Server disconnected": http:// against the HTTPS server names the scheme."""
    from cellplane.client import CellplaneConnectionError, Client

    plain = deployment.url.replace("https://", "http://")
    with (
        Client(plain, deployment.admin_token, retries=0) as client,
        pytest.raises(CellplaneConnectionError) as caught,
    ):
        client.whoami()
    assert f"the server at {plain} speaks HTTPS" in str(caught.value)
    assert f"use {deployment.url}" in str(caught.value)


def test_exec_streams_over_wss_with_a_client_certificate(
    deployment: Deployment, me: dict[str, Any], tmp_path: Path
) -> None:
    """The interactive exec's WebSocket on the HTTPS server, authenticated by the certificate
    alone: the TLS extension reaches the WebSocket route too."""
    with deployment.client() as admin:
        admin.upload_image("busybox", build_busybox_archive(tmp_path / "image"))
        task = admin.create_cell(
            "default", "tls-exec", "busybox", command=["sleep", "600"], cpu=0.05, memory_mb=32
        )
        cell_id = task["entity"]["id"]
        deadline = time.monotonic() + 60
        while admin.get_cell(cell_id)["state"] != "RUNNING":
            assert time.monotonic() < deadline, admin.get_cell(cell_id)
            time.sleep(0.2)
        try:
            issued, key_pem = _obtain(deployment, me["subject"])
            (tmp_path / "chain.pem").write_text(issued["chain"])
            (tmp_path / "key.pem").write_bytes(key_pem)
            assert deployment.ca_file is not None
            context = ssl.create_default_context(cafile=str(deployment.ca_file))
            context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
            with (
                Client(deployment.url, None, verify=context) as by_certificate,
                by_certificate.exec_stream(cell_id, ["sh", "-c", "echo over-tls"]) as session,
            ):
                assert list(session.output()) == [("stdout", b"over-tls\n")]
            assert (session.status.exit_code, session.status.error) == (0, None)
        finally:
            admin.delete_cell(cell_id)
