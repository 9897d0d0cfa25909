"""The deployment's certificate authority at work: client, host and server certificates.

`cellplane.identity.ca` holds the primitives; this module gives them a home and a database:

- the CA lives in ``<data_dir>/identity/ca/`` (keys 0600 in 0700 directories): a root, the
  ``system`` intermediate (the API server's own HTTPS certificate and the agents' host
  certificates) and one intermediate per tenant, created the first time that tenant needs one;
- every issued certificate is a row of ``certificates`` (:class:`IssuedCertificateRecord`);
  revocations are saved both there and in the CA's ``revoked.json``, and on load the CA takes
  over any revocation the database knows and the files do not (a crash between the two writes);
- checking a presented client certificate (mTLS at the API) is `identity/mtls.py`.

Client certificates are bound to their caller: the CSR's common name must be the caller's user
id (what ``GET /v1/whoami`` answers as ``subject``); the issuer never takes a subject on trust.
Host certificates are issued by the system intermediate, not a tenant's: hosts belong to the
deployment, and no tenant's intermediate (or tenant admin) can mint or revoke one. Their rows
are filed under the ``default`` tenant because the table needs one; only a system admin may
revoke them.

All CA state changes happen under one process-wide lock. One server process owns a data
directory; `ensure_root` may run before it starts (``cellplane up``, the test harness).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from cellplane.files import ensure_private_dir, write_private_file
from cellplane.identity.ca import (
    CAError,
    CertificateAuthority,
    CSRError,
    Profile,
    TenantCA,
)
from cellplane.identity.rbac import Principal
from cellplane.services import audit
from cellplane.services.context import Services
from cellplane.state.identity_models import IssuedCertificateRecord, User
from cellplane.state.models import Tenant
from cellplane.validation import DNS_LABEL

__all__ = [
    "CA_LOCK",
    "CLIENT_TTL_DEFAULT_S",
    "CLIENT_TTL_MAX_S",
    "CertificateRefused",
    "ca",
    "ca_chain_pem",
    "crl_pem",
    "default_server_names",
    "ensure_root",
    "issue_host_certificate",
    "list_certificates",
    "revoke",
    "root_pem_path",
    "serial_hex",
    "server_certificate",
    "sign_user_csr",
]

_DAY: Final = 86400.0
CLIENT_TTL_DEFAULT_S: Final = 30 * _DAY
CLIENT_TTL_MAX_S: Final = 365 * _DAY
HOST_TTL_S: Final = 90 * _DAY
SERVER_TTL_S: Final = 90 * _DAY
#: The server certificate is reissued when it has less than this left.
SERVER_RENEW_S: Final = 30 * _DAY
_MAX_CSR_BYTES: Final = 64 * 1024
_DEPLOYMENT_NAME: Final = "Cellplane"
_DEFAULT_TENANT: Final = "default"

_DNS_LABEL: Final = DNS_LABEL

CA_LOCK = threading.RLock()
#: Loaded authorities by CA directory (a process may serve several data dirs: the unit tests).
_AUTHORITIES: dict[Path, CertificateAuthority] = {}


class CertificateRefused(Unauthorized):
    """A presented client certificate is not acceptable; ``reason`` is a `CertReason` value or
    ``unknown`` / ``owner`` (no live record, or its user or host is gone)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        text = f"the client certificate is not valid ({reason})"
        super().__init__(f"{text}: {detail}" if detail else text)
        self.reason = reason


# -- storage ------------------------------------------------------------------------------


def _ca_dir(data_dir: Path) -> Path:
    return data_dir / "identity" / "ca"


def _tls_dir(data_dir: Path) -> Path:
    return data_dir / "identity" / "tls"


def root_pem_path(data_dir: Path) -> Path:
    """Where the root certificate is published (readable by all: it is public)."""
    return _tls_dir(data_dir) / "ca.pem"


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _when(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def _load_or_create(directory: Path, now: float) -> CertificateAuthority:
    with CA_LOCK:
        if (directory / "root" / "cert.pem").exists():
            # A CA that exists but cannot be read (loose modes, corrupt files) is an error for
            # the operator: replacing it would silently invalidate every certificate issued.
            return CertificateAuthority.load(directory)
        authority = CertificateAuthority.create(_DEPLOYMENT_NAME, now)
        authority.save(directory)
        return authority


def _publish_root(data_dir: Path, authority: CertificateAuthority) -> Path:
    path = root_pem_path(data_dir)
    pem = authority.root_cert_pem
    if not path.exists() or path.read_text(encoding="ascii", errors="replace") != pem:
        ensure_private_dir(path.parent)
        write_private_file(path, pem.encode("ascii"))
        os.chmod(path, 0o644)
    return path


def ensure_root(data_dir: Path, now: float | None = None) -> Path:
    """Load or create the CA of the server data dir ``data_dir``; the root PEM's path.

    Needs no database: ``cellplane up`` calls it before starting the server, so it can hand
    the root to the CLI configuration and the agent.
    """
    with CA_LOCK:
        authority = _AUTHORITIES.get(_ca_dir(data_dir)) or _load_or_create(
            _ca_dir(data_dir), _now(now)
        )
        return _publish_root(data_dir, authority)


def _save(svc: Services, authority: CertificateAuthority) -> None:
    authority.save(_ca_dir(svc.data_dir))


def _issuer_of(
    s: Session, authority: CertificateAuthority, rec: IssuedCertificateRecord
) -> TenantCA | None:
    if rec.profile in ("host", "server"):
        return authority.system
    tenant = s.get(Tenant, rec.tenant_id)
    if tenant is None or tenant.name not in authority.tenants:
        return None
    return authority.tenant(tenant.name)


def _reconcile(s: Session, authority: CertificateAuthority) -> bool:
    """Revoke in the CA whatever the database has revoked; whether anything changed."""
    changed = False
    rows = s.scalars(
        select(IssuedCertificateRecord).where(IssuedCertificateRecord.revoked_at.is_not(None))
    )
    for rec in rows:
        issuer = _issuer_of(s, authority, rec)
        serial = int(rec.serial, 16)
        if issuer is not None and not issuer.is_revoked(serial) and rec.revoked_at is not None:
            issuer.revoke(serial, rec.revoked_at.timestamp())
            changed = True
    return changed


def _authority(svc: Services, s: Session | None = None) -> CertificateAuthority:
    directory = _ca_dir(svc.data_dir)
    with CA_LOCK:
        authority = _AUTHORITIES.get(directory)
        if authority is not None:
            return authority
        authority = _load_or_create(directory, time.time())
        if s is not None:
            changed = _reconcile(s, authority)
        else:
            with svc.db.reader() as r:
                changed = _reconcile(r, authority)
        if changed:
            _save(svc, authority)
        _publish_root(svc.data_dir, authority)
        _AUTHORITIES[directory] = authority
        return authority


def ca(svc: Services) -> CertificateAuthority:
    """The deployment's CA, loaded (or created) once per process."""
    return _authority(svc)


def _tenant_ca(svc: Services, authority: CertificateAuthority, tenant: str, now: float) -> TenantCA:
    """``tenant``'s intermediate, created and saved on first use (call under the lock)."""
    if tenant in authority.tenants:
        return authority.tenant(tenant)
    try:
        tca = authority.create_tenant(tenant, now)
    except CAError as exc:
        raise Conflict(f"tenant {tenant!r} cannot have a certificate authority: {exc}") from exc
    _save(svc, authority)
    return tca


# -- the server's own certificate -------------------------------------------------------


def _split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    for raw in names:
        name = raw.strip().strip("[]").lower()
        if not name:
            continue
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            name = name.rstrip(".")
            labels = name.split(".")
            ok = len(name) <= 253 and all(_DNS_LABEL.fullmatch(label) for label in labels)
            if ok and name not in dns:
                dns.append(name)
            continue
        if not ip.is_unspecified and str(ip) not in ips:
            ips.append(str(ip))
    return dns, ips


def _current_server_cert(
    cert_path: Path, key_path: Path, authority: CertificateAuthority
) -> x509.Certificate | None:
    if not (cert_path.exists() and key_path.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(authority.system.cert)
    except (ValueError, TypeError, OSError, InvalidSignature):
        return None  # unreadable, or from a CA that has since been replaced: reissue
    return cert


def server_certificate(
    svc: Services, names: list[str], *, now: float | None = None
) -> tuple[Path, Path]:
    """(certificate chain PEM path, key path) for the API server's HTTPS.

    Files live in ``<data_dir>/identity/tls/`` (the key 0600). The certificate is reused until
    it has less than 30 days left or ``names`` (DNS names and IP addresses; unspecified
    addresses such as 0.0.0.0 and names that are not valid DNS names are skipped) change.
    """
    now = _now(now)
    dns, ips = _split_names(names)
    if not dns and not ips:
        raise ValidationFailed.field("names", "no valid DNS name or IP address")
    tls = _tls_dir(svc.data_dir)
    cert_path, key_path = tls / "server.pem", tls / "server.key"
    with CA_LOCK:
        authority = _authority(svc)
        cert = _current_server_cert(cert_path, key_path, authority)
        if cert is not None:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            same = set(san.get_values_for_type(x509.DNSName)) == set(dns) and {
                str(ip) for ip in san.get_values_for_type(x509.IPAddress)
            } == set(ips)
            if same and cert.not_valid_after_utc.timestamp() - now > SERVER_RENEW_S:
                return cert_path, key_path
        issued = authority.issue_server_cert(dns, ips, now, ttl_s=SERVER_TTL_S)
        ensure_private_dir(tls)
        write_private_file(key_path, issued.key_pem.encode("ascii"))
        write_private_file(cert_path, issued.chain_pem.encode("ascii"))
        _publish_root(svc.data_dir, authority)
    return cert_path, key_path


def default_server_names(listen_host: str) -> list[str]:
    """What the server's certificate names: loopback, this machine, the listen address."""
    return ["127.0.0.1", "localhost", socket.gethostname(), listen_host]


# -- issuing --------------------------------------------------------------------------------


def _csr_bytes(csr_pem: object) -> bytes:
    if not isinstance(csr_pem, str | bytes) or not csr_pem:
        raise ValidationFailed.field("csr", "a PEM certificate signing request is required")
    data = csr_pem.encode("utf-8", "replace") if isinstance(csr_pem, str) else csr_pem
    if len(data) > _MAX_CSR_BYTES:
        raise ValidationFailed.field("csr", f"larger than {_MAX_CSR_BYTES} bytes")
    return data


def _requested_cn(data: bytes) -> str | None:
    """The CSR's one common name, or None when it cannot tell (the signer then explains)."""
    try:
        csr = x509.load_pem_x509_csr(data)
        attrs = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        return None  # unreadable: sign_csr answers with the precise reason
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        return None
    return attrs[0].value


def _sign(tca: TenantCA, data: bytes, profile: Profile, ttl_s: float, now: float) -> str:
    try:
        return tca.sign_csr(data, profile=profile, ttl_s=ttl_s, now=now)
    except CSRError as exc:
        raise ValidationFailed.field("csr", str(exc)) from exc
    except CAError as exc:
        raise Conflict(f"the certificate authority cannot sign now: {exc}") from exc


def serial_hex(serial: int) -> str:
    return f"{serial:x}"


def _view(rec: IssuedCertificateRecord) -> dict[str, Any]:
    return {
        "serial": rec.serial,
        "tenant_id": rec.tenant_id,
        "subject": rec.subject,
        "profile": rec.profile,
        "owner": rec.owner,
        "not_after": rec.not_after.isoformat(),
        "created_at": rec.created_at.isoformat(),
        "revoked_at": rec.revoked_at.isoformat() if rec.revoked_at else None,
    }


def _record(
    s: Session, cert_pem: str, *, tenant_id: str, profile: Profile, owner: str, now: float
) -> IssuedCertificateRecord:
    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    rec = IssuedCertificateRecord(
        serial=serial_hex(cert.serial_number),
        tenant_id=tenant_id,
        subject=str(cns[0].value) if cns else "",
        profile=profile,
        owner=owner,
        not_after=cert.not_valid_after_utc,
        created_at=_when(now),
        revoked_at=None,
    )
    s.add(rec)
    s.flush()
    return rec


def sign_user_csr(
    svc: Services,
    s: Session,
    principal: Principal,
    csr_pem: str,
    ttl_s: float = CLIENT_TTL_DEFAULT_S,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """A client certificate for the calling user from their CSR, by their tenant's intermediate.

    The CSR's CN must be the caller's user id. Answers the record's view plus ``certificate``
    (PEM) and ``chain`` (the certificate then the tenant intermediate: what a TLS client
    presents, since the server trusts only the root).
    """
    now = _now(now)
    if principal.kind != "user":
        raise Forbidden("client certificates are issued to users only")
    user = s.get(User, principal.subject)
    if user is None or user.tenant_id != principal.tenant_id or user.disabled:
        raise Forbidden("client certificates are issued to users of the directory only")
    if not 0 < ttl_s <= CLIENT_TTL_MAX_S:
        raise ValidationFailed.field("ttl_days", f"must be 1-{int(CLIENT_TTL_MAX_S // _DAY)}")
    data = _csr_bytes(csr_pem)
    cn = _requested_cn(data)
    if cn is not None and cn != user.id:
        raise ValidationFailed.field(
            "csr", f"the common name (CN) must be your user id {user.id!r}, not {cn!r}"
        )
    tenant = s.get(Tenant, user.tenant_id)
    if tenant is None:
        raise NotFound("your tenant no longer exists")
    with CA_LOCK:
        tca = _tenant_ca(svc, _authority(svc, s), tenant.name, now)
        cert_pem = _sign(tca, data, "client", ttl_s, now)
    rec = _record(
        s, cert_pem, tenant_id=tenant.id, profile="client", owner=f"user:{user.id}", now=now
    )
    audit.record(
        s,
        tenant_id=tenant.id,
        actor=audit.actor_of(principal),
        action="cert.issue",
        target=rec.serial,
        at=_when(now),
    )
    return {**_view(rec), "certificate": cert_pem, "chain": cert_pem + tca.cert_pem}


def _default_tenant_id(s: Session) -> str:
    tid = s.scalar(select(Tenant.id).where(Tenant.name == _DEFAULT_TENANT))
    if tid is None:
        raise Conflict("the default tenant is missing; host certificates are filed under it")
    return tid


def _valid_dns(name: str) -> bool:
    dns, _ = _split_names([name])
    return dns == [name]


def issue_host_certificate(
    svc: Services,
    s: Session,
    host_id: str,
    host_name: str,
    csr_pem: str | None,
    *,
    addresses: Sequence[str] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """A host certificate (TLS client and server) for an agent, by the system intermediate.

    With a CSR, its CN must be ``host_name`` and its SANs name the host. Without one, a key is
    generated here and returned as ``key`` (only for callers that can carry it safely). The
    host's earlier certificates are revoked: a host holds one live certificate.
    """
    now = _now(now)
    tenant_id = _default_tenant_id(s)
    key_pem: str | None = None
    if csr_pem is not None:
        data = _csr_bytes(csr_pem)
        cn = _requested_cn(data)
        if cn is not None and cn != host_name:
            raise ValidationFailed.field(
                "csr", f"the common name (CN) must be the host name {host_name!r}, not {cn!r}"
            )
    with CA_LOCK:
        authority = _authority(svc, s)
        system = authority.system
        if csr_pem is None:
            ips = [a for a in addresses if _split_names([a])[1]]
            dns = [host_name] if _valid_dns(host_name) else []
            try:
                issued = system.issue(
                    host_name, profile="host", ttl_s=HOST_TTL_S, now=now, dns_names=dns, ips=ips
                )
            except CSRError as exc:
                raise ValidationFailed.field("name", str(exc)) from exc
            cert_pem, key_pem = issued.cert_pem, issued.key_pem
        else:
            cert_pem = _sign(system, data, "host", HOST_TTL_S, now)
        revoke_host_certificates(svc, s, host_id, now=now)
    owner = f"host:{host_id}"
    rec = _record(s, cert_pem, tenant_id=tenant_id, profile="host", owner=owner, now=now)
    audit.record(
        s,
        tenant_id=tenant_id,
        actor=f"agent:{host_id}",
        action="cert.issue",
        target=rec.serial,
        at=_when(now),
    )
    out = {**_view(rec), "certificate": cert_pem, "chain": cert_pem + system.cert_pem}
    if key_pem is not None:
        out["key"] = key_pem
    return out


# -- listing and revoking -------------------------------------------------------------------


def revoke_host_certificates(
    svc: Services, s: Session, host_id: str, *, now: float | None = None
) -> list[str]:
    """Revoke every live certificate of host ``host_id`` (in the CA and in ``s``); the serials."""
    now, rec = _now(now), IssuedCertificateRecord
    live = s.scalars(
        select(rec).where(rec.owner == f"host:{host_id}", rec.revoked_at.is_(None))
    ).all()
    with CA_LOCK:
        authority = _authority(svc, s)
        for old in live:
            old.revoked_at = _when(now)
            authority.system.revoke(int(old.serial, 16), now)
        if live:
            _save(svc, authority)
    return [old.serial for old in live]


def list_certificates(svc: Services, principal: Principal) -> dict[str, Any]:
    """The caller's own certificates; their tenant's for a caller with ``users:read``."""
    q = select(IssuedCertificateRecord).order_by(IssuedCertificateRecord.created_at.desc())
    if principal.can("users:read") and principal.kind != "agent":
        q = q.where(IssuedCertificateRecord.tenant_id == principal.tenant_id)
    else:
        q = q.where(
            IssuedCertificateRecord.tenant_id == principal.tenant_id,
            IssuedCertificateRecord.owner == f"{principal.kind}:{principal.subject}",
        )
    with svc.db.reader() as s:
        return {"items": [_view(r) for r in s.scalars(q)]}


def _normalise_serial(serial: str) -> str | None:
    text = serial.strip().lower().replace(":", "")
    text = text.removeprefix("0x")
    try:
        return serial_hex(int(text, 16)) if 0 < len(text) <= 48 else None
    except ValueError:
        return None


def revoke(
    svc: Services, s: Session, principal: Principal, serial: str, *, now: float | None = None
) -> dict[str, Any]:
    """Revoke a certificate of the caller's tenant: its owner, a tenant admin (client
    certificates) or a system admin may. Another tenant's serial answers 404 (to everyone, as
    any other tenant's resource); revoking twice keeps the first date."""
    now = _now(now)
    key = _normalise_serial(serial)
    rec = s.get(IssuedCertificateRecord, key) if key else None
    if rec is None or rec.tenant_id != principal.tenant_id:
        raise NotFound(f"certificate {serial!r} does not exist")
    own = principal.kind == "user" and rec.owner == f"user:{principal.subject}"
    admin = rec.profile == "client" and principal.can("users:write")
    if not (own or admin or principal.is_system_admin):
        raise Forbidden("only its owner or an administrator may revoke this certificate")
    if rec.revoked_at is None:
        rec.revoked_at = _when(now)
        with CA_LOCK:
            authority = _authority(svc, s)
            issuer = _issuer_of(s, authority, rec)
            if issuer is not None:
                issuer.revoke(int(rec.serial, 16), now)
                _save(svc, authority)
        audit.record(
            s,
            tenant_id=rec.tenant_id,
            actor=audit.actor_of(principal),
            action="cert.revoke",
            target=rec.serial,
            at=_when(now),
        )
    return _view(rec)


# -- publishing -----------------------------------------------------------------------------


def _tenant_issuer(svc: Services, tenant: str | None, now: float) -> TenantCA:
    authority = _authority(svc)
    if tenant is None:
        return authority.system
    with svc.db.reader() as s:
        exists = s.scalar(select(Tenant.id).where(Tenant.name == tenant)) is not None
    if not exists:
        raise NotFound(f"tenant {tenant!r} does not exist")
    with CA_LOCK:
        return _tenant_ca(svc, authority, tenant, now)


def ca_chain_pem(svc: Services, tenant: str | None = None, *, now: float | None = None) -> str:
    """The root PEM; with ``tenant``, that tenant's intermediate then the root."""
    if tenant is None:
        return _authority(svc).root_cert_pem
    return _tenant_issuer(svc, tenant, _now(now)).chain_pem


def crl_pem(svc: Services, tenant: str | None = None, *, now: float | None = None) -> str:
    """The CRL of ``tenant``'s intermediate, or without one of the system intermediate (hosts)."""
    now = _now(now)
    issuer = _tenant_issuer(svc, tenant, now)
    with CA_LOCK:
        return issuer.crl_pem(now)
