"""Client certificates over the API: issue from a CSR, list, revoke, and the public CA routes."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from cellplane_platform_support import PROBLEM, Platform
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from cellplane.api import routes_pki
from cellplane.state.identity_models import AuditEvent, IssuedCertificateRecord

if TYPE_CHECKING:
    from conftest import Caller

DAY = 86400.0


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _counts(plat: Platform) -> tuple[int, int]:
    with plat.svc.db.reader() as s:
        certs = s.scalar(select(func.count()).select_from(IssuedCertificateRecord))
        events = s.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "cert.issue")
        )
    return int(certs or 0), int(events or 0)


def test_a_user_gets_a_client_certificate_for_their_own_csr(
    plat: Platform, admin: Caller, make_csr: Callable[..., str], key: ec.EllipticCurvePrivateKey
) -> None:
    before = time.time()
    r = plat.client.post(
        "/v1/certificates", json={"csr": make_csr(admin.id), "ttl_days": 7}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert {"serial", "certificate", "chain", "not_after"} <= body.keys()
    cert = _cert(body["certificate"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == admin.id
    assert cert.public_key() == key.public_key()
    assert f"{cert.serial_number:x}" == body["serial"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    not_after = datetime.fromisoformat(body["not_after"]).timestamp()
    assert before + 7 * DAY - 5 <= not_after <= time.time() + 7 * DAY + 5
    # The chain is what a TLS client presents: the certificate, then the tenant intermediate,
    # which the published tenant chain (intermediate, root) vouches for.
    chain = x509.load_pem_x509_certificates(body["chain"].encode())
    published = x509.load_pem_x509_certificates(
        plat.client.get("/v1/ca", params={"tenant": "default"}).text.encode()
    )
    assert chain == [cert, published[0]]
    cert.verify_directly_issued_by(published[0])
    published[0].verify_directly_issued_by(published[1])
    with plat.svc.db.reader() as s:
        rec = s.get(IssuedCertificateRecord, body["serial"])
        assert rec is not None
        assert (rec.owner, rec.profile, rec.subject, rec.tenant_id) == (
            f"user:{admin.id}",
            "client",
            admin.id,
            admin.tenant_id,
        )
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "cert.issue"))
        assert event is not None
        assert (event.actor, event.target, event.tenant_id) == (
            f"user:{admin.id}",
            body["serial"],
            admin.tenant_id,
        )


def _garbage(make_csr: Callable[..., str], caller: Caller) -> str:
    return "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n"


def _bad_signature(make_csr: Callable[..., str], caller: Caller) -> str:
    csr = x509.load_pem_x509_csr(make_csr(caller.id).encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature's s value
    tampered = x509.load_der_x509_csr(bytes(der))
    assert not tampered.is_signature_valid
    return tampered.public_bytes(serialization.Encoding.PEM).decode()


def _oversize(make_csr: Callable[..., str], caller: Caller) -> str:
    return make_csr(caller.id) + "\n" * (70 * 1024)


def _rsa_1024(make_csr: Callable[..., str], caller: Caller) -> str:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return make_csr(caller.id, key=small)


def _someone_else(make_csr: Callable[..., str], caller: Caller) -> str:
    return make_csr("usr-somebody-else")


@pytest.mark.parametrize(
    ("make_bad", "says"),
    [
        (_garbage, "not a PEM certificate signing request"),
        (_bad_signature, "signature"),
        (_oversize, "larger than"),
        (_rsa_1024, "1024 bits is too small"),
        (_someone_else, "must be your user id"),
    ],
    ids=["garbage", "bad-signature", "oversize", "rsa-1024", "someone-else"],
)
def test_a_bad_csr_is_refused_naming_csr_and_nothing_is_written(
    plat: Platform,
    admin: Caller,
    make_csr: Callable[..., str],
    make_bad: Callable[[Callable[..., str], Caller], str],
    says: str,
) -> None:
    before = _counts(plat)
    r = plat.client.post(
        "/v1/certificates", json={"csr": make_bad(make_csr, admin)}, headers=admin.headers
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    (error,) = r.json()["errors"]
    assert error["field"] == "csr"
    assert says in error["message"]
    assert _counts(plat) == before


@pytest.mark.parametrize("ttl_days", [0, 366])
def test_ttl_days_is_bounded(
    plat: Platform, admin: Caller, make_csr: Callable[..., str], ttl_days: int
) -> None:
    r = plat.client.post(
        "/v1/certificates",
        json={"csr": make_csr(admin.id), "ttl_days": ttl_days},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["ttl_days"]
    assert _counts(plat) == (0, 0)


def test_issuing_needs_a_caller(plat: Platform, make_csr: Callable[..., str]) -> None:
    r = plat.client.post("/v1/certificates", json={"csr": make_csr("x")})
    assert r.status_code == 401


def test_users_of_another_tenant_get_their_tenants_intermediate(
    plat: Platform,
    admin: Caller,
    add_user: Callable[..., Caller],
    issue: Callable[..., dict[str, Any]],
) -> None:
    bob = add_user("bob", tenant="acme", role="tenant-admin")
    mine, theirs = issue(admin), issue(bob)
    acme = x509.load_pem_x509_certificates(plat.client.get("/v1/ca?tenant=acme").text.encode())
    default = x509.load_pem_x509_certificates(
        plat.client.get("/v1/ca?tenant=default").text.encode()
    )
    assert acme[1] == default[1]  # one root
    assert acme[0] != default[0]
    _cert(theirs["certificate"]).verify_directly_issued_by(acme[0])
    _cert(mine["certificate"]).verify_directly_issued_by(default[0])


def test_listing_shows_own_certificates_and_the_tenants_to_an_admin(
    plat: Platform,
    admin: Caller,
    add_user: Callable[..., Caller],
    issue: Callable[..., dict[str, Any]],
) -> None:
    carol = add_user("carol")  # project-viewer: no users:read
    bob = add_user("bob", tenant="acme", role="tenant-admin")
    a, c, b = issue(admin), issue(carol), issue(bob)

    def serials(caller: Caller) -> set[str]:
        r = plat.client.get("/v1/certificates", headers=caller.headers)
        assert r.status_code == 200, r.text
        return {item["serial"] for item in r.json()["items"]}

    assert serials(carol) == {c["serial"]}
    assert serials(admin) == {a["serial"], c["serial"]}
    assert serials(bob) == {b["serial"]}


def test_another_tenants_serial_answers_404(
    plat: Platform,
    admin: Caller,
    add_user: Callable[..., Caller],
    issue: Callable[..., dict[str, Any]],
) -> None:
    bob = add_user("bob", tenant="acme", role="tenant-admin")
    serial = issue(admin)["serial"]
    r = plat.client.post(f"/v1/certificates/{serial}/revoke", headers=bob.headers)
    assert r.status_code == 404
    r = plat.client.post("/v1/certificates/not-hex/revoke", headers=bob.headers)
    assert r.status_code == 404
    with plat.svc.db.reader() as s:
        rec = s.get(IssuedCertificateRecord, serial)
        assert rec is not None and rec.revoked_at is None


def test_only_the_owner_or_an_admin_revokes(
    plat: Platform,
    admin: Caller,
    add_user: Callable[..., Caller],
    issue: Callable[..., dict[str, Any]],
) -> None:
    carol, dave = add_user("carol"), add_user("dave")
    serial = issue(carol)["serial"]
    r = plat.client.post(f"/v1/certificates/{serial}/revoke", headers=dave.headers)
    assert r.status_code == 403
    r = plat.client.post(f"/v1/certificates/{serial}/revoke", headers=carol.headers)
    assert r.status_code == 200, r.text
    first = r.json()["revoked_at"]
    assert first
    # Again: the same answer, the first date.
    r = plat.client.post(f"/v1/certificates/{serial}/revoke", headers=admin.headers)
    assert r.status_code == 200
    assert r.json()["revoked_at"] == first
    other = issue(dave)["serial"]
    r = plat.client.post(f"/v1/certificates/{other.upper()}/revoke", headers=admin.headers)
    assert r.status_code == 200
    with plat.svc.db.reader() as s:
        targets = s.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "cert.revoke")
        ).all()
    assert sorted(targets) == sorted([serial, other])


def test_the_crl_lists_revoked_serials(
    plat: Platform, admin: Caller, issue: Callable[..., dict[str, Any]]
) -> None:
    kept, revoked = issue(admin), issue(admin)
    r = plat.client.post(f"/v1/certificates/{revoked['serial']}/revoke", headers=admin.headers)
    assert r.status_code == 200
    r = plat.client.get("/v1/ca/crl", params={"tenant": "default"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-pem-file")
    crl = x509.load_pem_x509_crl(r.content)
    chain = x509.load_pem_x509_certificates(plat.client.get("/v1/ca?tenant=default").content)
    assert crl.is_signature_valid(chain[0].public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(int(revoked["serial"], 16)) is not None
    assert crl.get_revoked_certificate_by_serial_number(int(kept["serial"], 16)) is None


def test_ca_routes_are_public_and_404_for_unknown_tenants(plat: Platform) -> None:
    assert {"/v1/ca", "/v1/ca/crl"} <= routes_pki.PUBLIC_ROUTES
    root = plat.client.get("/v1/ca")
    assert root.status_code == 200
    (cert,) = x509.load_pem_x509_certificates(root.content)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert plat.client.get("/v1/ca?tenant=nope").status_code == 404
    assert plat.client.get("/v1/ca/crl?tenant=nope").status_code == 404
    # Without a tenant: the system intermediate's CRL (host certificates).
    assert plat.client.get("/v1/ca/crl").status_code == 200
