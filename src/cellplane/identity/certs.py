"""Certificate building blocks of the CA: profiles, errors, result types, CSR checks, x509 helpers.

Used by ``ca.py`` (the root and per-tenant intermediates) and nothing else; split from it to keep
each module readable. Pure: no clock (``now`` is an argument), no storage beyond the explicit key
and certificate loaders.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cellplane.files import (
    KeyStoreError,
    read_private_file,
)
from cellplane.validation import DNS_LABEL

__all__ = [
    "CAError",
    "CSRError",
    "CertReason",
    "CertificateError",
    "IssuedCertificate",
    "Profile",
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
    ext: Iterable[x509.GeneralName]
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        ext = []  # no SANs (cryptography 51 refuses an empty SubjectAlternativeName)
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
