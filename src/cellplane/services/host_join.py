"""Joining hosts: join tokens (one-use or expiring), re-registration by certificate, revocation.

An agent joins with a join token (`cellplane host token create`, shown once; or the
deployment's bootstrap token, `<data dir>/server/join-token`), sends a CSR and receives a host
certificate from the CA; from then on it authenticates with that certificate (mutual TLS) and
no bearer host token is issued. A host whose certificate is still valid registers again with the
certificate alone (an agent restart, or the rotation of its certificate before expiry), without
a join token. `revoke` revokes every certificate of a host at once: its next request is refused
(401 naming the revocation), until it joins again with a join token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.errors import NotFound, Unauthorized, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.services import audit
from cellplane.services.context import Principal, Services
from cellplane.state.models import Host, JoinToken, Setting

__all__ = [
    "BOOTSTRAP_KEY",
    "MAX_TTL_S",
    "MAX_USES",
    "admit",
    "check_join_token",
    "create_token",
    "delete_token",
    "find_host",
    "fingerprint",
    "list_tokens",
    "revoke_host",
]

BOOTSTRAP_KEY = "join_token_sha256"
MAX_TTL_S = 30 * 24 * 3600.0
MAX_USES = 10_000
TOKEN_PREFIX = "cpj_"


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def _aware(t: datetime | None, now: datetime) -> datetime | None:
    if t is not None and t.tzinfo is None:  # SQLite returns naive datetimes, written in UTC
        return t.replace(tzinfo=now.tzinfo)
    return t


def check_join_token(s: Session, token: str, *, consume: bool, now: datetime) -> bool:
    """Whether ``token`` admits an agent: the bootstrap token, or a join token that has not
    expired and has uses left. With ``consume`` a use is counted (in ``s``'s transaction)."""
    if not token:
        return False
    boot = s.get(Setting, BOOTSTRAP_KEY)
    if boot is not None and hmac.compare_digest(boot.value, _sha(token)):
        return True
    row = s.scalar(select(JoinToken).where(JoinToken.token_sha256 == _sha(token)))
    if row is None:
        return False
    expires = _aware(row.expires_at, now)
    if expires is not None and expires <= now:
        return False
    if row.uses_left is not None and row.uses_left <= 0:
        return False
    if consume:
        row.used += 1
        if row.uses_left is not None:
            row.uses_left -= 1
    return True


def _token_view(row: JoinToken, now: datetime) -> dict[str, Any]:
    expires = _aware(row.expires_at, now)
    if expires is not None and expires <= now:
        state = "EXPIRED"
    elif row.uses_left is not None and row.uses_left <= 0:
        state = "USED"
    else:
        state = "ACTIVE"
    created = _aware(row.created_at, now)
    return {
        "id": row.id,
        "state": state,
        "created_by": row.created_by,
        "created_at": created.isoformat() if created else None,
        "expires_at": expires.isoformat() if expires else None,
        "uses_left": row.uses_left,
        "used": row.used,
    }


def create_token(
    svc: Services, principal: Principal, ttl_s: float | None, uses: int | None
) -> dict[str, Any]:
    """A new join token; the token itself is in the answer only (it is kept hashed)."""
    if ttl_s is not None and not (0 < ttl_s <= MAX_TTL_S):
        raise ValidationFailed.field("ttl_s", f"must be above 0 and at most {MAX_TTL_S:.0f} s")
    if uses is not None and not (1 <= uses <= MAX_USES):
        raise ValidationFailed.field("uses", f"must be 1 to {MAX_USES} (or null: no limit)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with svc.db.session() as s:
        row = JoinToken(
            id=new_id("jtk"),
            token_sha256=_sha(token),
            created_by=audit.actor_of(principal),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s) if ttl_s is not None else None,
            uses_left=uses,
            used=0,
        )
        s.add(row)
        audit.record(
            s,
            tenant_id=principal.tenant_id or None,
            actor=audit.actor_of(principal),
            action="host.join_token.create",
            target=row.id,
            detail={"ttl_s": ttl_s, "uses": uses},
            at=now,
        )
        view = _token_view(row, now)
    return {**view, "token": token}


def list_tokens(svc: Services) -> list[dict[str, Any]]:
    now = utcnow()
    with svc.db.reader() as s:
        rows = s.scalars(select(JoinToken).order_by(JoinToken.created_at, JoinToken.id))
        return [_token_view(r, now) for r in rows]


def delete_token(svc: Services, principal: Principal, token_id: str) -> None:
    with svc.db.session() as s:
        row = s.get(JoinToken, token_id)
        if row is None:
            raise NotFound(f"join token {token_id!r} does not exist")
        s.delete(row)
        audit.record(
            s,
            tenant_id=principal.tenant_id or None,
            actor=audit.actor_of(principal),
            action="host.join_token.delete",
            target=token_id,
        )


def find_host(s: Session, ref: str) -> Host:
    h = s.get(Host, ref) or s.scalar(select(Host).where(Host.name == ref))
    if h is None:
        raise NotFound(f"host {ref!r} does not exist")
    return h


def revoke_host(svc: Services, principal: Principal, ref: str) -> str:
    """Revoke every certificate of host ``ref`` (id or name) and its host token: its next
    request is refused. Returns the host id. Revoking twice keeps the first date."""
    from cellplane.identity import pki

    now = utcnow()
    with svc.db.session() as s:
        h = find_host(s, ref)
        if h.revoked_at is None:
            h.revoked_at = now
        h.token_hash = _sha(secrets.token_urlsafe(32))  # a bearer host token stops working too
        host_id = h.id
        serials = pki.revoke_host_certificates(svc, s, host_id)
        audit.record(
            s,
            tenant_id=principal.tenant_id or None,
            actor=audit.actor_of(principal),
            action="host.revoke",
            target=host_id,
            detail={"certificates": serials},
            at=now,
        )
    # This process stops accepting its token at once; another replica may answer its beats
    # for up to `heartbeats.TOKEN_TTL_S`, but does not write them (`hosts.beat`).
    svc.host_tokens.forget(host_id)
    svc.notifier.publish("controller")
    return host_id


def admit(
    s: Session, token: str, cert_host: str | None, name: str, *, consume: bool, now: datetime
) -> bool:
    """Admit a registration: by the host certificate of the host it names (``cert_host``, the
    id of a host whose certificate the API verified), or by a join token. Returns whether a
    join token admitted it; raises `Unauthorized` otherwise."""
    if cert_host is not None:
        h = s.get(Host, cert_host)
        if h is not None and h.name == name and h.revoked_at is None:
            return False
        if not token:
            raise Unauthorized("this host certificate is not the certificate of host " + repr(name))
    if not check_join_token(s, token, consume=consume, now=now):
        raise Unauthorized("join token is not valid (unknown, expired or used up)")
    return True


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of a certificate's DER form, hex (what the server pins)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
