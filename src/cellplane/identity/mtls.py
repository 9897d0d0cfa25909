"""Mutual TLS: the user or host behind a client certificate from this deployment's CA.

Called by the API's credential dependency (`api/deps.py`) for a request that presents a client
certificate and no bearer token. Issuing and revoking live in `pki.py`; this module only checks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from cellplane.identity import pki
from cellplane.identity.certs import CertificateError, Profile
from cellplane.identity.rbac import Principal, roles_of
from cellplane.services.context import Services
from cellplane.state.identity_models import IssuedCertificateRecord, User
from cellplane.state.models import Host, Tenant

__all__ = ["principal_from_client_cert"]


def _leaf(chain: Sequence[bytes | str]) -> x509.Certificate:
    first = chain[0]
    try:
        if isinstance(first, str):
            return x509.load_pem_x509_certificate(first.encode("ascii"))
        return x509.load_der_x509_certificate(first)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise pki.CertificateRefused("malformed", "not an X.509 certificate") from exc


def principal_from_client_cert(
    svc: Services, der_chain: Sequence[bytes | str], *, now: float | None = None
) -> Principal | None:
    """The user or host a TLS client certificate was issued to; None if none was presented.

    ``der_chain`` is the peer's chain, leaf first, as DER bytes or PEM strings (the ASGI TLS
    extension gives PEM). The leaf must chain to our root through the intermediate that issued
    it (a tenant's for users, the system one for hosts), be within its validity, unrevoked in
    the CA and the database, and its user or host must still exist. Raises
    :class:`CertificateRefused` (401) naming the reason otherwise.
    """
    if not der_chain:
        return None
    now = time.time() if now is None else now
    leaf = _leaf(der_chain)
    authority = pki.ca(svc)
    issuers = [authority.system, *(authority.tenant(t) for t in authority.tenants)]
    issuer = next((i for i in issuers if i.cert.subject == leaf.issuer), None)
    if issuer is None:
        raise pki.CertificateRefused("untrusted", "not issued by this deployment's CA")
    profile: Profile = "host" if issuer is authority.system else "client"
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    try:
        with pki.CA_LOCK:
            verified = issuer.verify_chain(pem, now, profile=profile)
    except CertificateError as exc:
        raise pki.CertificateRefused(exc.reason.value, exc.detail) from exc
    with svc.db.reader() as s:
        rec = s.get(IssuedCertificateRecord, pki.serial_hex(verified.serial))
        if rec is None:
            raise pki.CertificateRefused("unknown", "no record of this certificate")
        if rec.revoked_at is not None:
            raise pki.CertificateRefused("revoked", f"serial {rec.serial}")
        if profile == "host":
            host = s.get(Host, rec.owner.removeprefix("host:"))
            if host is None or rec.owner != f"host:{host.id}":
                raise pki.CertificateRefused("owner", "the host no longer exists")
            return Principal(
                subject=host.id,
                tenant_id="",
                tenant="",
                roles=("agent",),
                kind="agent",
                name=host.name,
            )
        tenant = s.scalar(select(Tenant).where(Tenant.name == verified.tenant))
        user = s.get(User, verified.common_name)
        if (
            tenant is None
            or user is None
            or user.tenant_id != tenant.id
            or user.disabled
            or rec.owner != f"user:{user.id}"
        ):
            raise pki.CertificateRefused("owner", "the user does not exist or is disabled")
        roles, projects = roles_of(s, tenant.id, "user", user.id)
        return Principal(
            subject=user.id,
            tenant_id=tenant.id,
            tenant=tenant.name,
            roles=roles,
            kind="user",
            project_roles=tuple(projects.items()),
            name=user.name,
        )
