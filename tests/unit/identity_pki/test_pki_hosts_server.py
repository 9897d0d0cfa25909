"""Host certificates at agent registration, the API server's certificate, the TLS plumbing."""

from __future__ import annotations

import ipaddress
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cellplane_platform_support import HOST_CAPACITY, Platform
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select

from cellplane.agent.server_client import host_csr
from cellplane.api.tls import tls_extension
from cellplane.identity import mtls, pki
from cellplane.state.identity_models import IssuedCertificateRecord
from cellplane.state.models import Host

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

DAY = 86400.0


def _register(plat: Platform, name: str, **extra: Any) -> Any:
    body = {
        "join_token": plat.join_token,
        "name": name,
        "address": "10.0.0.7",
        "capacity": HOST_CAPACITY,
        **extra,
    }
    return plat.client.post("/v1/agent/register", json=body)


def _host_sans(name: str) -> list[x509.GeneralName]:
    return [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("10.0.0.7"))]


def test_register_with_a_csr_answers_a_host_certificate(
    plat: Platform, make_csr: Callable[..., str], mtls_client: Callable[[str | None], TestClient]
) -> None:
    r = _register(plat, "node-7", csr=make_csr("node-7", sans=_host_sans("node-7")))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["host_token"] == ""  # mutual TLS from now on: no bearer host token
    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
    chain = x509.load_pem_x509_certificates(data["certificate_chain"].encode())
    assert chain[0] == cert
    system = pki.ca(plat.svc).system
    assert chain[1] == system.cert
    verified = system.verify_chain(data["certificate"], time.time(), profile="host")
    assert verified.dns_names == ("node-7",) and verified.ips == ("10.0.0.7",)
    eku = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    with plat.svc.db.reader() as s:
        rec = s.get(IssuedCertificateRecord, f"{cert.serial_number:x}")
        assert rec is not None
        assert (rec.owner, rec.profile) == (f"host:{data['host_id']}", "host")
    # The certificate identifies the host: as a principal and on the agent routes.
    der = cert.public_bytes(serialization.Encoding.DER)
    p = mtls.principal_from_client_cert(plat.svc, [der])
    assert p is not None
    assert (p.kind, p.subject, p.roles, p.name) == ("agent", data["host_id"], ("agent",), "node-7")
    client = mtls_client(data["certificate"])
    r = client.get(f"/v1/agent/hosts/{data['host_id']}/assignments", params={"wait": 0})
    assert r.status_code == 200, r.text
    r = client.get(f"/v1/agent/hosts/{plat.host_id}/assignments", params={"wait": 0})
    assert r.status_code == 401  # another host's routes
    assert client.get("/v1/whoami").status_code == 403  # not a user


def test_registering_again_supersedes_the_previous_host_certificate(
    plat: Platform, make_csr: Callable[..., str]
) -> None:
    csr = make_csr("node-8", sans=_host_sans("node-8"))
    first = _register(plat, "node-8", csr=csr).json()
    second = _register(plat, "node-8", csr=csr).json()
    assert first["host_id"] == second["host_id"]
    with pytest.raises(pki.CertificateRefused) as info:
        mtls.principal_from_client_cert(plat.svc, [first["certificate"]])
    assert info.value.reason == "revoked"
    assert mtls.principal_from_client_cert(plat.svc, [second["certificate"]]) is not None


def test_register_without_a_csr_is_unchanged(plat: Platform) -> None:
    r = _register(plat, "node-9")
    assert r.status_code == 200
    assert set(r.json()) == {"api_version", "host_id", "host_token"}


@pytest.mark.parametrize(
    ("csr", "says"),
    [
        ("garbage", "not a PEM certificate signing request"),
        (42, "PEM"),
        ("wrong-cn", "must be the host name"),
    ],
)
def test_a_bad_csr_at_register_writes_nothing(
    plat: Platform, make_csr: Callable[..., str], csr: Any, says: str
) -> None:
    if csr == "wrong-cn":
        csr = make_csr("someone-else", sans=_host_sans("someone-else"))
    with plat.svc.db.reader() as s:
        hosts = s.scalar(select(func.count(Host.id)))
    r = _register(plat, "node-10", csr=csr)
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert error["field"] == "csr" and says in error["message"]
    with plat.svc.db.reader() as s:
        assert s.scalar(select(func.count(Host.id))) == hosts
        assert s.scalar(select(func.count()).select_from(IssuedCertificateRecord)) == 0


def test_a_bad_join_token_gets_no_certificate(plat: Platform, make_csr: Callable[..., str]) -> None:
    r = plat.client.post(
        "/v1/agent/register",
        json={
            "join_token": "wrong",
            "name": "node-11",
            "capacity": HOST_CAPACITY,
            "csr": make_csr("node-11", sans=_host_sans("node-11")),
        },
    )
    assert r.status_code == 401


def test_a_host_certificate_can_be_issued_with_a_generated_key(plat: Platform) -> None:
    with plat.svc.db.session() as s:
        out = pki.issue_host_certificate(
            plat.svc, s, plat.host_id, "host-1", None, addresses=["10.0.0.1"]
        )
    assert "PRIVATE KEY" in out["key"]
    assert mtls.principal_from_client_cert(plat.svc, [out["certificate"]]) is not None


# -- the server's certificate ---------------------------------------------------------------


def _sans(path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def test_the_server_certificate_is_kept_until_names_change_or_it_nears_expiry(
    plat: Platform,
) -> None:
    names = ["127.0.0.1", "localhost", "Bad_Name", "0.0.0.0", "cp.example.org", "::1"]
    cert_path, key_path = pki.server_certificate(plat.svc, names)
    assert cert_path.parent == plat.svc.data_dir / "identity" / "tls"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert _sans(cert_path) == ({"localhost", "cp.example.org"}, {"127.0.0.1", "::1"})
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    system = pki.ca(plat.svc).system
    assert chain[1] == system.cert  # leaf then intermediate: what the TLS server sends
    pki.ca(plat.svc).system.verify_chain(
        chain[0].public_bytes(serialization.Encoding.PEM),
        time.time(),
        profile="server",
        server_name="localhost",
    )
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key() == chain[0].public_key()
    root = pki.root_pem_path(plat.svc.data_dir).read_text()
    assert root == pki.ca(plat.svc).root_cert_pem
    first = cert_path.read_bytes()
    # Same names (in another order): kept.
    pki.server_certificate(plat.svc, list(reversed(names)))
    assert cert_path.read_bytes() == first
    # 61 days later it has 29 left: reissued.
    not_after = chain[0].not_valid_after_utc.timestamp()
    pki.server_certificate(plat.svc, names, now=not_after - 31 * DAY)
    assert cert_path.read_bytes() == first
    pki.server_certificate(plat.svc, names, now=not_after - 29 * DAY)
    assert cert_path.read_bytes() != first
    second = cert_path.read_bytes()
    pki.server_certificate(plat.svc, ["localhost"])
    assert cert_path.read_bytes() != second
    assert _sans(cert_path) == ({"localhost"}, set())


def test_a_server_certificate_needs_a_name(plat: Platform) -> None:
    from cellplane.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        pki.server_certificate(plat.svc, ["0.0.0.0", "not_valid"])


# -- agent and TLS plumbing -----------------------------------------------------------------


def test_the_agent_keeps_one_private_host_key(tmp_path: Path) -> None:
    cert_dir = tmp_path / "tls"
    first = host_csr(cert_dir, "node-1", "10.0.0.7")
    assert first is not None
    assert stat.S_IMODE((cert_dir / "host.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_dir.stat().st_mode) == 0o700
    second = host_csr(cert_dir, "node-1", "10.0.0.7")
    assert second is not None
    a, b = (x509.load_pem_x509_csr(c.encode()) for c in (first, second))
    assert a.public_key() == b.public_key()
    assert a.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-1"
    # Upper case is no DNS name, but the IP still names the host.
    assert host_csr(cert_dir, "Node-1", "10.0.0.7") is not None
    assert host_csr(cert_dir, "Node_1", "not-an-ip") is None
    assert host_csr(cert_dir, "x" * 70, "10.0.0.7") is None


class _FakeSSL:
    def __init__(self, der: bytes | None) -> None:
        self._der = der

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return self._der

    def version(self) -> str:
        return "TLSv1.3"


def test_the_tls_extension_carries_the_peer_certificate_as_pem(
    plat: Platform, admin: Any, issue: Callable[..., dict[str, Any]]
) -> None:
    pem = issue(admin)["certificate"]
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    ext = tls_extension(_FakeSSL(der))  # type: ignore[arg-type]
    (chain_pem,) = ext["client_cert_chain"]
    assert (
        x509.load_pem_x509_certificate(chain_pem.encode()).public_bytes(serialization.Encoding.DER)
        == der
    )
    assert ext["tls_version"] == 0x0304
    assert tls_extension(_FakeSSL(None))["client_cert_chain"] == []  # type: ignore[arg-type]
