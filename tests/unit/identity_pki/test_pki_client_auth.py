"""Client certificates as credentials: `principal_from_client_cert` and mTLS at the API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from cellplane_platform_support import Platform
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cellplane.identity import mtls, pki
from cellplane.identity.ca import CertificateAuthority

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from conftest import Caller

DAY = 86400.0


def _der(pem: str) -> bytes:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.public_bytes(serialization.Encoding.DER)


def _refusal(plat: Platform, pem: str, now: float | None = None) -> str:
    with pytest.raises(pki.CertificateRefused) as info:
        mtls.principal_from_client_cert(plat.svc, [_der(pem)], now=now)
    assert info.value.status == 401
    return info.value.reason


def test_a_client_certificate_maps_to_its_user_and_roles(
    plat: Platform, admin: Caller, issue: Callable[..., dict[str, Any]]
) -> None:
    body = issue(admin)
    assert mtls.principal_from_client_cert(plat.svc, []) is None
    for chain in ([_der(body["certificate"])], [body["certificate"]]):  # DER or PEM
        p = mtls.principal_from_client_cert(plat.svc, chain)
        assert p is not None
        assert (p.subject, p.tenant_id, p.tenant, p.kind, p.name) == (
            admin.id,
            admin.tenant_id,
            "default",
            "user",
            "admin",
        )
        assert p.roles == ("system-admin",)


def test_a_tenant_admin_keeps_their_roles(
    plat: Platform, add_user: Callable[..., Caller], issue: Callable[..., dict[str, Any]]
) -> None:
    bob = add_user("bob", tenant="acme", role="tenant-admin")
    p = mtls.principal_from_client_cert(plat.svc, [_der(issue(bob)["certificate"])])
    assert p is not None
    assert (p.subject, p.tenant, p.roles) == (bob.id, "acme", ("tenant-admin",))


def test_a_revoked_certificate_is_refused(
    plat: Platform, admin: Caller, issue: Callable[..., dict[str, Any]]
) -> None:
    body = issue(admin)
    r = plat.client.post(f"/v1/certificates/{body['serial']}/revoke", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert _refusal(plat, body["certificate"]) == "revoked"


def test_revocations_survive_a_restart_even_if_the_ca_files_lost_them(
    plat: Platform, admin: Caller, issue: Callable[..., dict[str, Any]]
) -> None:
    body = issue(admin)
    plat.client.post(f"/v1/certificates/{body['serial']}/revoke", headers=admin.headers)
    ca_dir = plat.svc.data_dir / "identity" / "ca"
    pki._AUTHORITIES.clear()  # a new process: the CA is loaded from disk again
    assert pki.ca(plat.svc).tenant("default").is_revoked(int(body["serial"], 16))
    # A crash between the database commit and the CA save: the files do not list it.
    (ca_dir / "tenants" / "default" / "revoked.json").write_text(json.dumps({}))
    pki._AUTHORITIES.clear()
    assert pki.ca(plat.svc).tenant("default").is_revoked(int(body["serial"], 16))
    reloaded = CertificateAuthority.load(ca_dir)  # ...and the reconciled list is saved
    assert reloaded.tenant("default").is_revoked(int(body["serial"], 16))
    assert _refusal(plat, body["certificate"]) == "revoked"


def test_an_expired_certificate_is_refused(
    plat: Platform, admin: Caller, issue: Callable[..., dict[str, Any]]
) -> None:
    pem = issue(admin, ttl_days=1)["certificate"]
    assert mtls.principal_from_client_cert(plat.svc, [_der(pem)], now=time.time() + DAY / 2)
    assert _refusal(plat, pem, now=time.time() + 2 * DAY) == "expired"


@pytest.mark.parametrize("name", ["Cellplane", "Evil"])
def test_a_certificate_from_another_ca_is_refused(plat: Platform, admin: Caller, name: str) -> None:
    # Even a look-alike CA (same names, same tenant) does not get in.
    now = time.time()
    evil = CertificateAuthority.create(name, now)
    evil.create_tenant("default", now)
    forged = evil.tenant("default").issue(admin.id, profile="client", ttl_s=DAY, now=now)
    assert _refusal(plat, forged.cert_pem) == "untrusted"


def test_a_certificate_of_a_disabled_user_is_refused(
    plat: Platform, add_user: Callable[..., Caller], issue: Callable[..., dict[str, Any]]
) -> None:
    from cellplane.state.identity_models import User

    carol = add_user("carol")
    pem = issue(carol)["certificate"]
    with plat.svc.db.session() as s:
        user = s.get(User, carol.id)
        assert user is not None
        user.disabled = True
    assert _refusal(plat, pem) == "owner"


def test_garbage_is_refused_as_malformed(plat: Platform) -> None:
    with pytest.raises(pki.CertificateRefused) as info:
        mtls.principal_from_client_cert(plat.svc, [b"not a certificate"])
    assert info.value.reason == "malformed"


# -- through the API (the ASGI TLS extension, as api/tls.py fills it in) ---------------------


def test_mtls_without_a_bearer_token_is_recognised(
    plat: Platform,
    admin: Caller,
    issue: Callable[..., dict[str, Any]],
    mtls_client: Callable[[str | None], TestClient],
) -> None:
    body = issue(admin)
    client = mtls_client(body["certificate"])
    r = client.get("/v1/whoami")
    assert r.status_code == 200, r.text
    assert (r.json()["subject"], r.json()["kind"]) == (admin.id, "user")
    # The caller may use it like any credential, e.g. to list and revoke its certificates.
    r = client.get("/v1/certificates")
    assert body["serial"] in {c["serial"] for c in r.json()["items"]}
    r = client.post(f"/v1/certificates/{body['serial']}/revoke")
    assert r.status_code == 200, r.text
    r = client.get("/v1/whoami")
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]


def test_a_bearer_token_wins_over_a_certificate_and_none_is_needed(
    plat: Platform,
    admin: Caller,
    add_user: Callable[..., Caller],
    issue: Callable[..., dict[str, Any]],
    mtls_client: Callable[[str | None], TestClient],
) -> None:
    carol = add_user("carol")
    client = mtls_client(issue(carol)["certificate"])
    r = client.get("/v1/whoami", headers=admin.headers)
    assert r.json()["subject"] == admin.id
    # TLS without a client certificate: the usual answer for a missing credential.
    r = mtls_client(None).get("/v1/whoami")
    assert r.status_code == 401
    assert "Bearer" in r.json()["detail"]


def test_a_user_certificate_is_not_a_host_credential(
    plat: Platform,
    admin: Caller,
    issue: Callable[..., dict[str, Any]],
    mtls_client: Callable[[str | None], TestClient],
) -> None:
    client = mtls_client(issue(admin)["certificate"])
    r = client.get(f"/v1/agent/hosts/{plat.host_id}/assignments", params={"wait": 0})
    assert r.status_code == 401
