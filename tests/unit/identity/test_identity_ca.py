"""Certificate authority: CSR checks, profiles, chains, tenants, revocation, storage."""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cellplane.identity.ca import (
    CAError,
    CertificateAuthority,
    CertificateError,
    CertReason,
    CSRError,
    Profile,
    TenantCA,
)
from cellplane.identity.keys import KeyStoreError

NOW = 1_700_000_000.0
DAY = 86400.0

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    ca = CertificateAuthority.create("acme", NOW)
    ca.create_tenant("alpha", NOW)
    ca.create_tenant("beta", NOW)
    return ca


@pytest.fixture(scope="module")
def alpha(ca: CertificateAuthority) -> TenantCA:
    return ca.tenant("alpha")


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    key: PrivateKey,
    cn: str | None = "alice",
    sans: list[x509.GeneralName] | None = None,
    extra_cn: str | None = None,
) -> bytes:
    attrs = []
    if cn is not None:
        with warnings.catch_warnings():
            # An attacker's CSR need not respect the length limit cryptography warns about.
            warnings.simplefilter("ignore", UserWarning)
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False))
    if extra_cn is not None:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, extra_cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    eddsa = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    algorithm = None if eddsa else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def ekus(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def refused(tenant: TenantCA, pem: str, now: float = NOW, **kw: object) -> CertReason:
    with pytest.raises(CertificateError) as info:
        tenant.verify_chain(pem, now, **kw)  # type: ignore[arg-type]
    return info.value.reason


# -- CSR acceptance --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
        lambda: rsa.generate_private_key(65537, 2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_client_csr_accepted_for_each_key_type(alpha: TenantCA, make_key: object) -> None:
    key = make_key()  # type: ignore[operator]
    pem = alpha.sign_csr(make_csr(key), profile="client", ttl_s=DAY, now=NOW)
    cert = load(pem)
    assert cert.public_key() == key.public_key()
    assert cert.issuer == alpha.cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "alpha"
    assert ekus(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc.timestamp() == NOW + DAY
    verified = alpha.verify_chain(pem, NOW + 60)
    assert (verified.common_name, verified.tenant, verified.profile) == ("alice", "alpha", "client")
    assert verified.serial == cert.serial_number


def test_serials_are_random_and_large(alpha: TenantCA, p256: ec.EllipticCurvePrivateKey) -> None:
    csr = make_csr(p256)
    serials = {
        load(alpha.sign_csr(csr, profile="client", ttl_s=DAY, now=NOW)).serial_number
        for _ in range(8)
    }
    assert len(serials) == 8
    assert all(s.bit_length() > 100 for s in serials)


def test_server_csr_keeps_validated_sans(alpha: TenantCA, p256: ec.EllipticCurvePrivateKey) -> None:
    sans: list[x509.GeneralName] = [
        x509.DNSName("db-1.alpha.test"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.7")),
        x509.IPAddress(ipaddress.ip_address("fd00::7")),
    ]
    pem = alpha.sign_csr(make_csr(p256, "db-1", sans), profile="server", ttl_s=DAY, now=NOW)
    assert ekus(load(pem)) == {ExtendedKeyUsageOID.SERVER_AUTH}
    verified = alpha.verify_chain(pem, NOW, profile="server")
    assert verified.dns_names == ("db-1.alpha.test",)
    assert verified.ips == ("10.0.0.7", "fd00::7")
    for name in ("db-1.alpha.test", "10.0.0.7"):
        alpha.verify_chain(pem, NOW, profile="server", server_name=name)
    assert refused(alpha, pem, profile="server", server_name="other.test") is CertReason.UNTRUSTED


def test_server_csr_without_san_uses_a_hostname_cn(
    alpha: TenantCA, p256: ec.EllipticCurvePrivateKey
) -> None:
    pem = alpha.sign_csr(make_csr(p256, "node1.alpha"), profile="host", ttl_s=DAY, now=NOW)
    cert = load(pem)
    assert ekus(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    assert alpha.verify_chain(pem, NOW, profile="host").dns_names == ("node1.alpha",)


def test_client_csr_sans_are_ignored(alpha: TenantCA, p256: ec.EllipticCurvePrivateKey) -> None:
    csr = make_csr(p256, "alice", [x509.UniformResourceIdentifier("https://evil.test")])
    cert = load(alpha.sign_csr(csr, profile="client", ttl_s=DAY, now=NOW))
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_validity_clamped_to_the_intermediate(
    alpha: TenantCA, p256: ec.EllipticCurvePrivateKey
) -> None:
    pem = alpha.sign_csr(make_csr(p256), profile="client", ttl_s=100 * 365 * DAY, now=NOW)
    assert load(pem).not_valid_after_utc == alpha.cert.not_valid_after_utc


# -- CSR rejection ---------------------------------------------------------------------------


def tampered_csr(key: ec.EllipticCurvePrivateKey) -> bytes:
    der = bytearray(
        x509.load_pem_x509_csr(make_csr(key, "alice")).public_bytes(serialization.Encoding.DER)
    )
    i = der.index(b"alice")
    der[i] = ord("m")  # "mlice": content changed after signing
    csr = x509.load_der_x509_csr(bytes(der))
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("build", "profile", "message"),
    [
        (lambda k: make_csr(rsa.generate_private_key(65537, 1024)), "client", "too small"),
        (lambda k: make_csr(ec.generate_private_key(ec.SECP521R1())), "client", "curve"),
        (lambda k: make_csr(ec.generate_private_key(ec.SECP256K1())), "client", "curve"),
        (lambda k: make_csr(ed448.Ed448PrivateKey.generate()), "client", "key type"),
        (tampered_csr, "client", "signature"),
        (lambda k: b"-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n", "client", "not a PEM"),
        (lambda k: b"hello", "client", "not a PEM"),
        (lambda k: b"A" * 70000, "client", "larger"),
        (lambda k: make_csr(k, None), "client", "exactly one common name"),
        (lambda k: make_csr(k, "alice", extra_cn="bob"), "client", "exactly one common name"),
        (lambda k: make_csr(k, "alice smith"), "client", "CN must"),
        (lambda k: make_csr(k, "*.alpha.test"), "client", "CN must"),
        (lambda k: make_csr(k, "a\nb"), "client", "CN must"),
        (lambda k: make_csr(k, "ok", [x509.DNSName("*.alpha.test")]), "server", "wildcards"),
        (lambda k: make_csr(k, "ok", [x509.DNSName("a..b")]), "server", "not a valid"),
        (
            lambda k: make_csr(k, "ok", [x509.UniformResourceIdentifier("spiffe://x")]),
            "server",
            "SAN type",
        ),
        (lambda k: make_csr(k, "alice@alpha"), "server", "need a DNS name"),
    ],
)
def test_csr_rejected(
    alpha: TenantCA,
    p256: ec.EllipticCurvePrivateKey,
    build: object,
    profile: Profile,
    message: str,
) -> None:
    csr = build(p256)  # type: ignore[operator]
    with pytest.raises(CSRError, match=message):
        alpha.sign_csr(csr, profile=profile, ttl_s=DAY, now=NOW)


def test_overlong_cn_rejected(alpha: TenantCA, p256: ec.EllipticCurvePrivateKey) -> None:
    csr = make_csr(p256, "x" * 65)
    # cryptography warns while parsing the oversized name; the CA then refuses it.
    with pytest.warns(UserWarning, match="length"), pytest.raises(CSRError, match="CN must"):
        alpha.sign_csr(csr, profile="client", ttl_s=DAY, now=NOW)


def test_sign_csr_argument_checks(alpha: TenantCA, p256: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CAError, match="profile"):
        alpha.sign_csr(make_csr(p256), profile="admin", ttl_s=DAY, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(CAError, match="ttl_s"):
        alpha.sign_csr(make_csr(p256), profile="client", ttl_s=0, now=NOW)
    with pytest.raises(CAError, match="not valid"):
        alpha.sign_csr(make_csr(p256), profile="client", ttl_s=DAY, now=NOW + 20 * 365 * DAY)


# -- chain verification -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(alpha: TenantCA) -> str:
    return alpha.issue("alice", profile="client", ttl_s=DAY, now=NOW).cert_pem


def test_validity_window(alpha: TenantCA, alice: str) -> None:
    assert alpha.verify_chain(alice, NOW + DAY - 1).common_name == "alice"
    assert refused(alpha, alice, NOW + DAY + 1) is CertReason.EXPIRED
    assert refused(alpha, alice, NOW - 3600) is CertReason.NOT_YET_VALID


def test_other_tenants_certificate_refused(ca: CertificateAuthority, alice: str) -> None:
    beta = ca.tenant("beta")
    assert refused(beta, alice) is CertReason.UNTRUSTED
    bob = beta.issue("bob", profile="client", ttl_s=DAY, now=NOW).cert_pem
    assert beta.verify_chain(bob, NOW).tenant == "beta"
    assert refused(ca.tenant("alpha"), bob) is CertReason.UNTRUSTED
    assert refused(ca.system, alice) is CertReason.UNTRUSTED


def test_same_tenant_name_in_another_deployment_refused(alpha: TenantCA, alice: str) -> None:
    rogue = CertificateAuthority.create("acme", NOW)
    rogue_alpha = rogue.create_tenant("alpha", NOW)
    forged = rogue_alpha.issue("alice", profile="client", ttl_s=DAY, now=NOW).cert_pem
    assert load(forged).issuer == load(alice).issuer  # same names, different keys
    assert refused(alpha, forged) is CertReason.UNTRUSTED


def test_self_signed_impostor_refused(alpha: TenantCA) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .issuer_name(alpha.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(load(alpha.cert_pem).not_valid_before_utc)
        .not_valid_after(load(alpha.cert_pem).not_valid_after_utc)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    assert refused(alpha, pem) is CertReason.UNTRUSTED


def test_profiles_are_exact(alpha: TenantCA, alice: str) -> None:
    host = alpha.issue("node1", profile="host", ttl_s=DAY, now=NOW, dns_names=["node1"]).cert_pem
    server = alpha.issue("web", profile="server", ttl_s=DAY, now=NOW, dns_names=["web"]).cert_pem
    assert refused(alpha, alice, profile="host") is CertReason.WRONG_PROFILE
    assert refused(alpha, host, profile="client") is CertReason.WRONG_PROFILE
    assert refused(alpha, server, profile="client") is CertReason.UNTRUSTED  # no clientAuth
    assert refused(alpha, host, profile="server") is CertReason.WRONG_PROFILE
    assert alpha.verify_chain(host, NOW, profile="host").profile == "host"
    assert alpha.verify_chain(server, NOW, profile="server").profile == "server"


@pytest.mark.parametrize("garbage", ["", "nope", "-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_garbage_certificate_is_malformed(alpha: TenantCA, garbage: str) -> None:
    assert refused(alpha, garbage) is CertReason.MALFORMED


def test_revocation_and_crl(ca: CertificateAuthority) -> None:
    tenant = ca.create_tenant("gamma", NOW)
    victim = tenant.issue("mallory", profile="client", ttl_s=DAY, now=NOW)
    other = tenant.issue("carol", profile="client", ttl_s=DAY, now=NOW)
    tenant.verify_chain(victim.cert_pem, NOW)
    tenant.revoke(victim.serial, NOW + 10)
    tenant.revoke(victim.serial, NOW + 99)  # idempotent, keeps the first date
    assert tenant.is_revoked(victim.serial) and not tenant.is_revoked(other.serial)
    assert refused(tenant, victim.cert_pem, NOW + 20) is CertReason.REVOKED
    assert tenant.verify_chain(other.cert_pem, NOW + 20).common_name == "carol"

    crl = x509.load_pem_x509_crl(tenant.crl_pem(NOW + 30, next_update_s=3600).encode())
    assert crl.issuer == tenant.cert.subject
    assert crl.is_signature_valid(tenant.cert.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(victim.serial)
    assert entry is not None and entry.revocation_date_utc.timestamp() == NOW + 10
    assert crl.get_revoked_certificate_by_serial_number(other.serial) is None
    assert crl.next_update_utc is not None
    assert crl.next_update_utc.timestamp() == NOW + 30 + 3600


def test_issue_server_cert(ca: CertificateAuthority) -> None:
    issued = ca.issue_server_cert(["api.acme.test", "localhost"], ["127.0.0.1", "::1"], NOW)
    cert = load(issued.cert_pem)
    key = serialization.load_pem_private_key(issued.key_pem.encode(), password=None)
    assert cert.public_key() == key.public_key()
    assert issued.chain_pem.count("BEGIN CERTIFICATE") == 2
    assert cert.issuer == ca.system.cert.subject
    for name in ("api.acme.test", "localhost", "127.0.0.1", "::1"):
        ca.system.verify_chain(issued.cert_pem, NOW, profile="server", server_name=name)
    with pytest.raises(CAError):
        ca.issue_server_cert([], [], NOW)
    with pytest.raises(CSRError):
        ca.issue_server_cert(["ok.test"], ["not-an-ip"], NOW)


def test_tenant_management(ca: CertificateAuthority) -> None:
    with pytest.raises(CAError, match="already"):
        ca.create_tenant("alpha", NOW)
    for bad in ("Alpha", "../x", "", "a" * 64, "-a"):
        with pytest.raises(CAError, match="invalid tenant"):
            ca.create_tenant(bad, NOW)
    with pytest.raises(CAError, match="no CA"):
        ca.tenant("nobody")
    assert {"alpha", "beta"} <= set(ca.tenants)


def test_chain_pem_is_intermediate_then_root(ca: CertificateAuthority, alpha: TenantCA) -> None:
    pems = alpha.chain_pem.split("-----END CERTIFICATE-----")[:2]
    certs = [load(p + "-----END CERTIFICATE-----") for p in pems]
    assert certs == [alpha.cert, ca.cert]
    alpha.cert.verify_directly_issued_by(ca.cert)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1


# -- storage ------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("acme", NOW)
    alpha = ca.create_tenant("alpha", NOW)
    revoked = alpha.issue("mallory", profile="client", ttl_s=DAY, now=NOW)
    kept = alpha.issue("alice", profile="client", ttl_s=DAY, now=NOW)
    alpha.revoke(revoked.serial, NOW + 1)
    ca.save(tmp_path / "ca")

    for path in [tmp_path / "ca", *(tmp_path / "ca").rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path

    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.name == "acme" and loaded.tenants == ["alpha"]
    assert loaded.cert == ca.cert
    again = loaded.tenant("alpha")
    assert again.revoked == {revoked.serial: NOW + 1}
    assert refused(again, revoked.cert_pem) is CertReason.REVOKED
    assert again.verify_chain(kept.cert_pem, NOW).common_name == "alice"
    fresh = again.issue("bob", profile="client", ttl_s=DAY, now=NOW).cert_pem
    assert alpha.verify_chain(fresh, NOW).common_name == "bob"  # same intermediate key
    server = loaded.issue_server_cert(["api.test"], [], NOW)
    ca.system.verify_chain(server.cert_pem, NOW, profile="server")


def test_load_refuses_loose_key_mode(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("acme", NOW)
    ca.save(tmp_path)
    os.chmod(tmp_path / "root" / "key.pem", 0o644)
    with pytest.raises(KeyStoreError, match="mode"):
        CertificateAuthority.load(tmp_path)


def test_load_refuses_misplaced_tenant(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("acme", NOW)
    ca.create_tenant("alpha", NOW)
    ca.create_tenant("beta", NOW)
    ca.save(tmp_path)
    shutil.rmtree(tmp_path / "tenants" / "beta")
    shutil.copytree(tmp_path / "tenants" / "alpha", tmp_path / "tenants" / "beta")
    with pytest.raises(KeyStoreError, match="tenant 'alpha'"):
        CertificateAuthority.load(tmp_path)


def test_load_refuses_intermediate_of_another_root(tmp_path: Path) -> None:
    ours = CertificateAuthority.create("acme", NOW)
    ours.create_tenant("alpha", NOW)
    ours.save(tmp_path / "ours")
    theirs = CertificateAuthority.create("acme", NOW)
    theirs.create_tenant("alpha", NOW)
    theirs.save(tmp_path / "theirs")
    shutil.rmtree(tmp_path / "ours" / "tenants" / "alpha")
    shutil.copytree(
        tmp_path / "theirs" / "tenants" / "alpha", tmp_path / "ours" / "tenants" / "alpha"
    )
    with pytest.raises(KeyStoreError, match="not issued by this root"):
        CertificateAuthority.load(tmp_path / "ours")
