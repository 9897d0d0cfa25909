"""Certificate authority: one root per deployment, one intermediate per tenant.

Called by the identity service to turn CSRs into client certificates (docker CLI, users),
host certificates (agents: both TLS client and server) and server certificates, to revoke
them and publish CRLs, and by the API's mTLS authentication to check a presented
certificate (:meth:`TenantCA.verify_chain`). The server's own HTTPS certificate comes from
:meth:`CertificateAuthority.issue_server_cert`, signed by a ``system`` intermediate that
belongs to no tenant.

The issuer decides what a certificate says. From a CSR only the public key, the common name
and (server and host profiles) DNS/IP subject alternative names are taken, each validated;
every other requested attribute or extension is ignored. Profiles are told apart by their
extended key usage, exactly:

=========  ==========================  ==========================================
profile    EKU                          SAN
=========  ==========================  ==========================================
client     clientAuth                   none
server     serverAuth                   DNS names / IPs (required)
host       clientAuth + serverAuth      DNS names / IPs (required)
=========  ==========================  ==========================================

Chain verification uses ``cryptography.x509.verification`` (RFC 5280 / web PKI rules),
then checks the issuing intermediate is this tenant's, the exact profile, and revocation.
Keys: root EC P-384, intermediates EC P-256; serials are 159 random bits. Nothing here
reads the clock: ``now`` (unix seconds) is an argument. Storage is explicit ``save``/``load``
of a directory (0700, files 0600); callers save after every change (e.g. a revocation).

The building blocks (profiles, errors, result types, CSR checks) live in ``certs.py``; the errors
and result types are part of this module's interface too (its methods raise and return them),
so they are listed in ``__all__`` here.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from cellplane.identity.certs import (
    _BACKDATE_S,
    _DAY,
    _EKUS,
    _MAX_CSR_BYTES,
    _PROFILES,
    _SYSTEM,
    _TENANT_RE,
    INTERMEDIATE_TTL_S,
    ROOT_TTL_S,
    SERVER_TTL_S,
    CAError,
    CertificateError,
    CertReason,
    CSRError,
    IssuedCertificate,
    Profile,
    VerifiedCertificate,
    _ca_cert,
    _ca_name,
    _check_pair,
    _check_public_key,
    _check_tenant,
    _common_name,
    _key_pem,
    _leaf_usage,
    _LeafKey,
    _load_cert,
    _load_key,
    _pem,
    _profile_of,
    _requested_sans,
    _sans_of,
    _ski,
    _subject,
    _when,
)
from cellplane.identity.files import (
    KeyStoreError,
    check_private,
    ensure_private_dir,
    read_private_file,
    write_private_file,
)

__all__ = [
    "CAError",
    "CSRError",
    "CertReason",
    "CertificateAuthority",
    "CertificateError",
    "IssuedCertificate",
    "KeyStoreError",
    "Profile",
    "TenantCA",
    "VerifiedCertificate",
]


class TenantCA:
    """One intermediate CA: issues, revokes and verifies the certificates of one tenant."""

    def __init__(
        self,
        tenant: str,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        root: x509.Certificate,
        revoked: Mapping[int, float] | None = None,
    ) -> None:
        self.tenant = tenant
        self._key = key
        self.cert = cert
        self.root = root
        self._revoked: dict[int, float] = dict(revoked or {})
        self._store = Store([root])
        ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            # Web PKI demands a SAN on every leaf; client certificates here carry none.
            x509.SubjectAlternativeName,
            Criticality.AGNOSTIC,
            None,
        )
        self._policies = (ExtensionPolicy.webpki_defaults_ca(), ee)

    @property
    def cert_pem(self) -> str:
        return _pem(self.cert)

    @property
    def chain_pem(self) -> str:
        """Intermediate then root: what a client needs to trust this tenant's certificates."""
        return _pem(self.cert) + _pem(self.root)

    # -- issuing ---------------------------------------------------------------------

    def sign_csr(self, csr_pem: str | bytes, *, profile: Profile, ttl_s: float, now: float) -> str:
        """Validate ``csr_pem`` and return a certificate PEM for it, or raise :class:`CSRError`.

        The validity ends at ``now + ttl_s`` or when this intermediate expires, if earlier.
        """
        if profile not in _PROFILES:
            raise CAError(f"unknown profile {profile!r}; choose one of {sorted(_PROFILES)}")
        if ttl_s <= 0:
            raise CAError("ttl_s must be positive")
        data = csr_pem.encode("ascii", "replace") if isinstance(csr_pem, str) else csr_pem
        if len(data) > _MAX_CSR_BYTES:
            raise CSRError(f"CSR larger than {_MAX_CSR_BYTES} bytes")
        try:
            csr = x509.load_pem_x509_csr(data)
            signature_ok = csr.is_signature_valid
            public_key = csr.public_key()
        except (ValueError, TypeError) as exc:
            raise CSRError("not a PEM certificate signing request") from exc
        except x509.UnsupportedGeneralNameType as exc:
            raise CSRError("CSR uses an unsupported name type") from exc
        if not signature_ok:
            raise CSRError("CSR signature does not verify (not signed by its own key)")
        leaf_key = _check_public_key(public_key)
        cn = _common_name(csr)
        dns: list[str] = []
        ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        if profile != "client":
            dns, ips = _requested_sans(csr, cn)
        cert = self._issue(leaf_key, cn, profile, dns, ips, now, ttl_s)
        return _pem(cert)

    def _issue(
        self,
        public_key: _LeafKey,
        cn: str,
        profile: Profile,
        dns: Sequence[str],
        ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
        now: float,
        ttl_s: float,
    ) -> x509.Certificate:
        ca_after = self.cert.not_valid_after_utc.timestamp()
        if not self.cert.not_valid_before_utc.timestamp() <= now < ca_after:
            raise CAError(f"the CA of tenant {self.tenant!r} is not valid at {_when(now)}")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.tenant),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_when(now - _BACKDATE_S))
            .not_valid_after(_when(min(now + ttl_s, ca_after)))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_usage(isinstance(public_key, rsa.RSAPublicKey)), True)
            .add_extension(x509.ExtendedKeyUsage(sorted(_EKUS[profile], key=str)), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(self.cert)),
                critical=False,
            )
        )
        if dns or ips:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ip) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def issue(
        self,
        common_name: str,
        *,
        profile: Profile,
        ttl_s: float,
        now: float,
        dns_names: Iterable[str] = (),
        ips: Iterable[str] = (),
    ) -> IssuedCertificate:
        """Generate an EC P-256 key and a certificate for it (through the CSR checks)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        try:
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        except ValueError as exc:
            raise CSRError(str(exc)) from exc
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        csr = builder.sign(key, hashes.SHA256())
        cert_pem = self.sign_csr(
            csr.public_bytes(serialization.Encoding.PEM), profile=profile, ttl_s=ttl_s, now=now
        )
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        return IssuedCertificate(
            cert_pem=cert_pem,
            key_pem=_key_pem(key).decode("ascii"),
            chain_pem=cert_pem + self.cert_pem,
            serial=cert.serial_number,
        )

    # -- revocation ------------------------------------------------------------------

    def revoke(self, serial: int, now: float) -> None:
        """Revoke ``serial`` from ``now`` on; revoking again keeps the first date."""
        self._revoked.setdefault(serial, now)

    def is_revoked(self, serial: int) -> bool:
        return serial in self._revoked

    @property
    def revoked(self) -> Mapping[int, float]:
        return dict(self._revoked)

    def crl_pem(self, now: float, next_update_s: float = _DAY) -> str:
        """A CRL of every revoked serial, signed by this intermediate, valid ``next_update_s``."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(_when(now))
            .next_update(_when(now + next_update_s))
            # Relying parties keep the CRL with the highest number; time only grows.
            .add_extension(x509.CRLNumber(int(now)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(self.cert)),
                critical=False,
            )
        )
        for serial, when in sorted(self._revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(_when(when))
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM).decode("ascii")

    # -- verification ----------------------------------------------------------------

    def verify_chain(
        self,
        cert_pem: str | bytes,
        now: float,
        *,
        profile: Profile = "client",
        server_name: str | None = None,
    ) -> VerifiedCertificate:
        """Accept ``cert_pem`` only if this tenant's intermediate issued it for ``profile``.

        Checks the chain to the root, validity windows, key usages, the exact profile and
        revocation; raises :class:`CertificateError`. For the server profile the name
        checked is ``server_name`` or, if ``None``, the certificate's first SAN.
        """
        try:
            data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
            cert = x509.load_pem_x509_certificate(data)
        except (ValueError, TypeError, UnicodeError) as exc:
            raise CertificateError(CertReason.MALFORMED, "not a PEM certificate") from exc
        when = _when(now)
        if when < cert.not_valid_before_utc:
            detail = f"valid from {cert.not_valid_before_utc}"
            raise CertificateError(CertReason.NOT_YET_VALID, detail)
        if when > cert.not_valid_after_utc:
            raise CertificateError(CertReason.EXPIRED, f"expired {cert.not_valid_after_utc}")
        dns, ips = _sans_of(cert)
        builder = PolicyBuilder().store(self._store).time(when).max_chain_depth(1)
        try:
            if profile == "server":
                name = server_name or (dns[0] if dns else (ips[0] if ips else None))
                if name is None:
                    raise CertificateError(CertReason.WRONG_PROFILE, "a server cert without SAN")
                verifier = builder.build_server_verifier(_subject(name))
                chain = verifier.verify(cert, [self.cert])
            else:
                builder = builder.extension_policies(
                    ca_policy=self._policies[0], ee_policy=self._policies[1]
                )
                chain = builder.build_client_verifier().verify(cert, [self.cert]).chain
        except VerificationError as exc:
            raise CertificateError(CertReason.UNTRUSTED, str(exc)) from exc
        # The root trusts every tenant's intermediate; only ours may vouch here.
        if len(chain) != 3 or chain[1] != self.cert:
            raise CertificateError(CertReason.UNTRUSTED, f"not issued by tenant {self.tenant!r}")
        actual = _profile_of(cert)
        if actual != profile:
            detail = f"a {actual} certificate, not {profile}"
            raise CertificateError(CertReason.WRONG_PROFILE, detail)
        if cert.serial_number in self._revoked:
            raise CertificateError(CertReason.REVOKED, f"serial {cert.serial_number:x}")
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return VerifiedCertificate(
            common_name=str(cns[0].value) if cns else "",
            tenant=self.tenant,
            profile=profile,
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc.timestamp(),
            dns_names=dns,
            ips=ips,
        )

    # -- storage ---------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write key (0600), certificate and revocations to ``directory`` (0700)."""
        root = Path(directory)
        ensure_private_dir(root)
        write_private_file(root / "key.pem", _key_pem(self._key))
        write_private_file(root / "cert.pem", self.cert_pem.encode("ascii"))
        revoked = {f"{serial:x}": when for serial, when in sorted(self._revoked.items())}
        write_private_file(root / "revoked.json", json.dumps(revoked, indent=1).encode())

    @classmethod
    def load(cls, directory: str | os.PathLike[str], root_cert: x509.Certificate) -> TenantCA:
        root = Path(directory)
        key = _load_key(root / "key.pem")
        cert = _load_cert(root / "cert.pem")
        try:
            raw = json.loads(read_private_file(root / "revoked.json"))
            revoked = {int(serial, 16): float(when) for serial, when in raw.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise KeyStoreError(f"corrupt revocation list in {root}: {exc}") from exc
        _check_pair(key, cert)
        try:
            cert.verify_directly_issued_by(root_cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise KeyStoreError(f"{root} holds a CA not issued by this root") from exc
        tenant = str(cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value)
        return cls(tenant, key, cert, root_cert, revoked)


class CertificateAuthority:
    """The deployment's root CA, its tenants' intermediates and the system intermediate."""

    def __init__(
        self,
        name: str,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        system: TenantCA,
        tenants: Mapping[str, TenantCA] | None = None,
    ) -> None:
        self.name = name
        self._key = key
        self.cert = cert
        self.system = system
        self._tenants: dict[str, TenantCA] = dict(tenants or {})

    @classmethod
    def create(cls, name: str, now: float, *, ttl_s: float = ROOT_TTL_S) -> CertificateAuthority:
        """A new root (EC P-384, self-signed) and its system intermediate."""
        if not name or len(name) > 64:
            raise CAError("deployment name must be 1-64 characters")
        key = ec.generate_private_key(ec.SECP384R1())
        cert = _ca_cert(_ca_name(name, f"{name} Root CA"), key, None, key, now, ttl_s)
        ca = cls(name, key, cert, system=_new_intermediate(name, _SYSTEM, key, cert, now, ttl_s))
        return ca

    @property
    def root_cert_pem(self) -> str:
        return _pem(self.cert)

    @property
    def tenants(self) -> list[str]:
        return sorted(self._tenants)

    def create_tenant(
        self, tenant: str, now: float, *, ttl_s: float = INTERMEDIATE_TTL_S
    ) -> TenantCA:
        """A new intermediate for ``tenant`` (refused if it already has one)."""
        _check_tenant(tenant)
        if tenant in self._tenants:
            raise CAError(f"tenant {tenant!r} already has a CA")
        ca = _new_intermediate(self.name, tenant, self._key, self.cert, now, ttl_s)
        self._tenants[tenant] = ca
        return ca

    def tenant(self, tenant: str) -> TenantCA:
        try:
            return self._tenants[tenant]
        except KeyError:
            raise CAError(f"tenant {tenant!r} has no CA") from None

    def issue_server_cert(
        self,
        dns_names: Iterable[str],
        ips: Iterable[str],
        now: float,
        *,
        ttl_s: float = SERVER_TTL_S,
    ) -> IssuedCertificate:
        """Key and certificate for the API server's own HTTPS, from the system intermediate."""
        dns = list(dns_names)
        addresses = list(ips)
        if not dns and not addresses:
            raise CAError("a server certificate needs at least one DNS name or IP")
        cn = dns[0] if dns else "cellplane-api"
        return self.system.issue(
            cn, profile="server", ttl_s=ttl_s, now=now, dns_names=dns, ips=addresses
        )

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write everything under ``directory``: root/, system/, tenants/<tenant>/."""
        root = Path(directory)
        ensure_private_dir(root)
        ensure_private_dir(root / "root")
        write_private_file(root / "root" / "key.pem", _key_pem(self._key))
        write_private_file(root / "root" / "cert.pem", self.root_cert_pem.encode("ascii"))
        self.system.save(root / _SYSTEM)
        ensure_private_dir(root / "tenants")
        for tenant, ca in self._tenants.items():
            ca.save(root / "tenants" / tenant)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        root = Path(directory)
        check_private(root, is_dir=True)
        key = _load_key(root / "root" / "key.pem")
        cert = _load_cert(root / "root" / "cert.pem")
        _check_pair(key, cert)
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        name = str(orgs[0].value) if orgs else ""
        system = TenantCA.load(root / _SYSTEM, cert)
        tenants: dict[str, TenantCA] = {}
        tenants_dir = root / "tenants"
        if tenants_dir.exists():
            for sub in sorted(tenants_dir.iterdir()):
                if sub.is_dir() and _TENANT_RE.fullmatch(sub.name):
                    ca = TenantCA.load(sub, cert)
                    if ca.tenant != sub.name:
                        raise KeyStoreError(f"{sub} holds the CA of tenant {ca.tenant!r}")
                    tenants[sub.name] = ca
        return cls(name, key, cert, system, tenants)


def _new_intermediate(
    org: str,
    tenant: str,
    root_key: ec.EllipticCurvePrivateKey,
    root_cert: x509.Certificate,
    now: float,
    ttl_s: float,
) -> TenantCA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _ca_name(org, f"{org} {tenant} CA", unit=tenant)
    cert = _ca_cert(subject, key, root_cert, root_key, now, ttl_s)
    return TenantCA(tenant, key, cert, root_cert)
