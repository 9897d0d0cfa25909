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
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from cellplane.identity.files import (
    KeyStoreError,
    check_private,
    ensure_private_dir,
    read_private_file,
    write_private_file,
)
from cellplane.validation import DNS_LABEL

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

Profile = Literal["client", "server", "host"]
_PROFILE_ORDER: Final[tuple[Profile, ...]] = get_args(Profile)
_PROFILES: Final = frozenset(_PROFILE_ORDER)

_DAY: Final = 86400.0
ROOT_TTL_S: Final = 10 * 365 * _DAY
INTERMEDIATE_TTL_S: Final = 5 * 365 * _DAY
SERVER_TTL_S: Final = 90 * _DAY
# Certificates start a minute in the past so a peer whose clock lags slightly accepts them.
_BACKDATE_S: Final = 60.0
_MAX_CSR_BYTES: Final = 64 * 1024
_MAX_RSA_BITS: Final = 8192
_SYSTEM: Final = "system"

_CN_RE: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,62}[A-Za-z0-9])?$")
_LABEL_RE: Final = DNS_LABEL
_TENANT_RE: Final = _LABEL_RE

_EKUS: Final[Mapping[str, frozenset[x509.ObjectIdentifier]]] = {
    "client": frozenset({ExtendedKeyUsageOID.CLIENT_AUTH}),
    "server": frozenset({ExtendedKeyUsageOID.SERVER_AUTH}),
    "host": frozenset({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}),
}


class CAError(Exception):
    """Base of this module's errors (bad arguments, expired CA, bad storage)."""


class CSRError(CAError):
    """A CSR was refused; the message names the problem and is safe to show the requester."""


class CertReason(StrEnum):
    """Why :meth:`TenantCA.verify_chain` refused a certificate."""

    MALFORMED = "malformed"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    UNTRUSTED = "untrusted"
    WRONG_PROFILE = "wrong_profile"
    REVOKED = "revoked"


class CertificateError(CAError):
    """A presented certificate is not acceptable; ``reason`` is for code."""

    def __init__(self, reason: CertReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate issued with a key generated here (server certs, tests)."""

    cert_pem: str
    key_pem: str = ""
    #: Leaf then intermediate: what a TLS server sends.
    chain_pem: str = ""
    serial: int = 0


@dataclass(frozen=True)
class VerifiedCertificate:
    """What an accepted certificate says, for authentication and audit."""

    common_name: str
    tenant: str
    profile: Profile
    serial: int
    not_after: float
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]


def _when(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ski(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


_CA_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _leaf_usage(rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA keys may also do TLS RSA key transport; EC and Ed25519 keys never encipher.
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: float,
    ttl_s: float,
) -> x509.Certificate:
    not_after = now + ttl_s
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc.timestamp())
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
        if issuer is None
        else x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_when(now - _BACKDATE_S))
        .not_valid_after(_when(not_after))
        # Root may sign intermediates only; intermediates may sign leaves only.
        .add_extension(x509.BasicConstraints(ca=True, path_length=1 if issuer is None else 0), True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(aki, critical=False)
    )
    return builder.sign(issuer_key, _hash_for(issuer_key))


def _hash_for(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()


def _check_tenant(tenant: str) -> str:
    if not _TENANT_RE.fullmatch(tenant):
        raise CAError(f"invalid tenant name {tenant!r}: lowercase letters, digits and '-'")
    return tenant


def _valid_dns_name(name: str) -> bool:
    if len(name) > 253 or name.endswith("."):
        return False
    labels = name.split(".")
    return all(_LABEL_RE.fullmatch(label) for label in labels)


_LeafKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def _check_public_key(key: object) -> _LeafKey:
    """``key`` if a CSR may carry it, else :class:`CSRError` naming the problem."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CSRError(f"RSA key of {key.key_size} bits is too small; need >= 2048")
        if key.key_size > _MAX_RSA_BITS:
            raise CSRError(f"RSA key of {key.key_size} bits is too large; max {_MAX_RSA_BITS}")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise CSRError(f"EC curve {key.curve.name} not accepted; use P-256 or P-384")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise CSRError(f"key type {type(key).__name__} not accepted; use RSA, EC or Ed25519")


def _common_name(csr: x509.CertificateSigningRequest) -> str:
    attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise CSRError("CSR subject must have exactly one common name (CN)")
    cn = attrs[0].value
    if not isinstance(cn, str) or not _CN_RE.fullmatch(cn):
        raise CSRError(
            "CN must be 1-64 characters of letters, digits and '._@-', "
            "starting and ending with a letter or digit"
        )
    return cn


def _requested_sans(
    csr: x509.CertificateSigningRequest, cn: str
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        ext = x509.SubjectAlternativeName([])
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CSRError(f"CSR extensions cannot be read: {exc}") from exc
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in ext:
        if isinstance(name, x509.DNSName):
            if not _valid_dns_name(name.value):
                raise CSRError(f"DNS name {name.value!r} is not a valid host name (no wildcards)")
            dns.append(name.value)
        elif isinstance(name, x509.IPAddress):
            if not isinstance(name.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise CSRError("IP SANs must be addresses, not networks")
            ips.append(name.value)
        else:
            raise CSRError(f"SAN type {type(name).__name__} not accepted; use DNS names or IPs")
    if not dns and not ips:
        if not _valid_dns_name(cn):
            raise CSRError("server and host certificates need a DNS name or IP SAN")
        dns.append(cn)
    return dns, ips


def _profile_of(cert: x509.Certificate) -> Profile | None:
    try:
        ekus = frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    for name in _PROFILE_ORDER:
        if ekus == _EKUS[name]:
            return name
    return None


def _sans_of(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(san.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return dns, ips


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


def _subject(name: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(read_private_file(path), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyStoreError(f"cannot read CA key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyStoreError(f"{path} is not an EC private key")
    return key


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_private_file(path))
    except ValueError as exc:
        raise KeyStoreError(f"cannot read certificate {path}: {exc}") from exc


def _check_pair(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    if cert.public_key() != key.public_key():
        raise KeyStoreError("CA key and certificate do not match")


def _ca_name(org: str, cn: str, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if unit is not None:
        # The tenant travels in OU so a loaded intermediate knows whose it is.
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


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
