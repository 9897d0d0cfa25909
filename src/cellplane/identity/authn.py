"""Bearer credentials -> Principal: access tokens of any tenant's issuer and personal access tokens.

The API's auth dependency (`api/deps.py`) calls `Authenticator.authenticate`; the OIDC provider
uses `issuer_url` and `verify_access_token`; the directory calls `subject_changed` when a user
or client changes. The first-start seed that creates the bootstrap credential lives in
`services/bootstrap.py`. Until the identity service issues tokens, the only
user credential is the bootstrap admin token that `cellplane up` creates: shown once, stored as a
SHA-256 hash (it is a 256-bit random secret, so a slow password hash adds nothing but latency).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import weakref
from typing import Any

from sqlalchemy import select

from cellplane.errors import Unauthorized
from cellplane.identity.compact import InvalidToken, peek_claims
from cellplane.identity.rbac import Principal, principal_from_claims, roles_of
from cellplane.services.context import Services
from cellplane.state.identity_models import OAuthClient, RevokedToken, User
from cellplane.state.models import Credential, Tenant

__all__ = ["DEFAULT_TENANT", "Authenticator", "sha256_hex", "subject_changed"]

#: The authenticators of this process (one per app), told when a user or client changes.
_LIVE: weakref.WeakSet[Authenticator] = weakref.WeakSet()


def subject_changed(subject_id: str) -> None:
    """A user or client was disabled, deleted or changed: every authenticator of this process
    forgets what it cached about them, so their tokens stop working at once (another process
    notices within its ``status_cache_s``)."""
    for authn in list(_LIVE):
        authn.forget_subject(subject_id)


DEFAULT_TENANT = "default"


def sha256_hex(s: str) -> str:
    """How bearer secrets (PATs, the join token) are stored: 256-bit random, so SHA-256 suffices."""
    return hashlib.sha256(s.encode()).hexdigest()


class Authenticator:
    """Bearer credentials -> Principal.

    Two kinds of bearer token: access tokens (JWTs signed by a tenant's issuer; the claims carry
    the roles, so a request costs a cached signature check) and personal access tokens
    (`cpt_...`, the bootstrap admin's; stored as SHA-256, roles read from the role assignments
    of their user and cached for `pat_cache_s`).

    An access token stands for its subject only while the subject may still sign in: a user who
    is disabled or deleted, or a client that is deleted, loses every token at once. Whether the
    subject is active is read from the database and cached for `status_cache_s` per subject;
    the directory calls `subject_changed` when it disables or deletes one, which drops the
    cached answer (and cached PATs) in this process immediately.
    """

    def __init__(
        self, svc: Services, pat_cache_s: float = 30.0, status_cache_s: float = 5.0
    ) -> None:
        self._svc = svc
        self._pat_cache_s = pat_cache_s
        self._status_cache_s = status_cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._status: dict[tuple[str, str, str], tuple[float, bool]] = {}
        self._tenants: dict[str, str] = {}  # name -> id
        self._issuers: dict[tuple[str, str | None], str] = {}  # (iss, request base) -> tenant id
        self._revoked: dict[str, float] | None = None  # jti -> exp
        self._lock = threading.Lock()
        _LIVE.add(self)

    # -- access tokens -------------------------------------------------------------------------

    def revoke_jti(self, jti: str, expires_at: float) -> None:
        """Called by the revocation endpoint (which also stores it) so this process sees it now."""
        with self._lock:
            self._load_revoked()[jti] = expires_at

    def _load_revoked(self) -> dict[str, float]:
        if self._revoked is None:
            with self._svc.db.reader() as s:
                rows = s.execute(select(RevokedToken.jti, RevokedToken.expires_at)).all()
            self._revoked = {jti: exp for jti, exp in rows}
        return self._revoked

    def _tenant_id(self, name: str) -> str | None:
        tid = self._tenants.get(name)
        if tid is None:
            with self._svc.db.reader() as s:
                tid = s.scalar(select(Tenant.id).where(Tenant.name == name))
            if tid is not None:
                self._tenants[name] = tid
        return tid

    def issuer_url(self, tenant: str, request_base: str | None = None) -> str:
        base = self._svc.public_url or (request_base or "").rstrip("/")
        return f"{base}/identity/{tenant}"

    def verify_access_token(
        self, token: str, now: float | None = None, request_base: str | None = None
    ) -> dict[str, Any]:
        """The claims of a valid access token of any tenant's issuer; Unauthorized otherwise."""
        now = time.time() if now is None else now
        try:
            unverified = peek_claims(token)
            iss = unverified["iss"]
            if not isinstance(iss, str):
                raise TypeError("iss")
        except (ValueError, KeyError, IndexError, TypeError):
            raise Unauthorized("the bearer token is not valid") from None
        tenant_id = self._issuers.get((iss, request_base))
        if tenant_id is None:
            tenant_id = self._issuer_tenant(iss, request_base)
        verifier = self._svc.tokens.verifier(tenant_id, iss, now)
        try:
            claims = verifier.verify(token, now, peeked=unverified)
        except InvalidToken as exc:
            raise Unauthorized(f"the bearer token is not valid ({exc.reason})") from None
        if claims.get("tid") != tenant_id:
            raise Unauthorized("the bearer token is not valid (tenant)")
        jti = claims.get("jti")
        revoked = self._revoked
        if revoked is None:
            with self._lock:
                revoked = self._load_revoked()
        # A dict read needs no lock: `revoke_jti` adds under the lock, nothing ever removes.
        if isinstance(jti, str) and jti in revoked:
            raise Unauthorized("the bearer token has been revoked")
        kind = "client" if claims.get("kind") == "service" else "user"
        if not self._subject_active(tenant_id, kind, str(claims.get("sub", ""))):
            raise Unauthorized("the bearer token is not valid (its subject is disabled or gone)")
        return claims

    def _issuer_tenant(self, iss: str, request_base: str | None) -> str:
        """The tenant id whose issuer `iss` is (for a request to `request_base`), remembered
        in `_issuers` (cleared with the tenant names by `forget`); Unauthorized if none is."""
        base, sep, tenant = iss.rpartition("/identity/")
        tenant_id = self._tenant_id(tenant) if sep and tenant else None
        if tenant_id is None or iss != self.issuer_url(tenant, request_base or base):
            raise Unauthorized("the bearer token is not valid (unknown issuer)")
        with self._lock:
            if len(self._issuers) > 1000:
                self._issuers.clear()
            self._issuers[(iss, request_base)] = tenant_id
        return tenant_id

    def _subject_active(self, tenant_id: str, kind: str, subject_id: str) -> bool:
        """Whether the user (not disabled) or client still exists in the tenant (cached)."""
        key = (tenant_id, kind, subject_id)
        now = time.monotonic()
        hit = self._status.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._svc.db.reader() as s:
            if kind == "client":
                row_tenant = s.scalar(
                    select(OAuthClient.tenant_id).where(OAuthClient.id == subject_id)
                )
                active = row_tenant == tenant_id
            else:
                row = s.execute(
                    select(User.tenant_id, User.disabled).where(User.id == subject_id)
                ).first()
                active = row is not None and row.tenant_id == tenant_id and not row.disabled
        with self._lock:
            if len(self._status) > 100_000:
                self._status.clear()
            self._status[key] = (now + self._status_cache_s, active)
        return active

    # -- any bearer token ------------------------------------------------------------------------

    def authenticate(self, token: str, request_base: str | None = None) -> Principal:
        if token.count(".") == 2:
            return principal_from_claims(self.verify_access_token(token, request_base=request_base))
        h = sha256_hex(token)
        now = time.monotonic()
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._svc.db.reader() as s:
            cred = s.scalar(select(Credential).where(Credential.secret_hash == h))
            if cred is None or not hmac.compare_digest(cred.secret_hash, h):
                raise Unauthorized("the bearer token is not valid")
            tenant = s.get(Tenant, cred.tenant_id)
            user = s.get(User, cred.subject)
            if user is not None:
                if user.disabled:
                    raise Unauthorized("the bearer token is not valid")
                roles, projects = roles_of(s, cred.tenant_id, "user", user.id)
            else:  # a credential of a deleted user, or of a pre-directory deployment
                roles, projects = tuple(cred.roles), {}
            p = Principal(
                subject=cred.subject,
                tenant_id=cred.tenant_id,
                tenant=tenant.name if tenant else "",
                roles=roles,
                project_roles=tuple(projects.items()),
                name=user.name if user else cred.subject,
            )
        with self._lock:
            self._cache[h] = (now + self._pat_cache_s, p)
        return p

    def forget(self) -> None:
        """Drop cached credentials (after role or user changes in this process)."""
        with self._lock:
            self._cache.clear()
            self._status.clear()
            self._tenants.clear()
            self._issuers.clear()

    def forget_subject(self, subject_id: str) -> None:
        """Drop what is cached about one user or client (see `subject_changed`)."""
        with self._lock:
            for key in [k for k in self._status if k[2] == subject_id]:
                del self._status[key]
            for h in [h for h, (_, p) in self._cache.items() if p.subject == subject_id]:
                del self._cache[h]
