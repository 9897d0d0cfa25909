"""Token store and refresh families: minting access/ID tokens, storing refresh tokens and codes
(SHA-256), claiming them once, revoking a family on reuse, revocation and logout.

Called by authlib through the adapters (`TenantServer.save_token`, the grants' storage callbacks,
the revocation and introspection endpoints).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    OAuth2Request,
)
from authlib.oidc.core.grants.util import create_half_hash
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cellplane.errors import Unauthorized
from cellplane.identity.oidc.adapters import user_info
from cellplane.identity.oidc.core import OidcProviderCore
from cellplane.identity.oidc.records import (
    AccessTokenRecord,
    AuthUser,
    Client,
    CodeRecord,
    Ctx,
    RefreshRecord,
)
from cellplane.identity.oidc.settings import (
    _ROLES_SEP,
)
from cellplane.identity.passwords import (
    generate_secret,
    hash_secret,
)
from cellplane.identity.signing import ACCESS_TOKEN_AUDIENCE, ALGORITHMS
from cellplane.ids import new_id
from cellplane.services import audit
from cellplane.state.identity_models import (
    AuthCode,
    RefreshToken,
    RevokedToken,
)


class TokenStoreMixin(OidcProviderCore):
    """Token storage of `OidcProvider`."""

    # -- tokens --------------------------------------------------------------------------------

    def generate_token(
        self,
        ctx: Ctx,
        grant_type: str,
        client: Client,
        user: AuthUser | None,
        scope: str | None,
        include_refresh_token: bool,
    ) -> dict[str, Any]:
        """authlib's token generator: a signed access token and maybe an opaque refresh token."""
        granted = client.get_allowed_scope(scope)
        if user is not None:
            claims = self.claims(ctx, "user", user.id, user.name, user.roles)
            subject = user.id
        else:
            claims = self.claims(ctx, "client", client.client_id, client.name)
            subject = client.client_id
        if granted:
            claims["scope"] = granted
        ttl = self.svc.tokens.access_ttl_s
        issuer = self.svc.tokens.issuer(ctx.tenant_id, ctx.issuer, ctx.now)
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": issuer.issue_access_token(
                subject, ACCESS_TOKEN_AUDIENCE, claims, ctx.now, ttl, client_id=client.client_id
            ),
            "expires_in": int(ttl),
        }
        if granted:
            token["scope"] = granted
        if include_refresh_token and user is not None and client.check_grant_type("refresh_token"):
            token["refresh_token"] = generate_secret(32)
        return token

    def id_token(
        self,
        ctx: Ctx,
        client: Client,
        user: AuthUser,
        token: Mapping[str, Any],
        *,
        nonce: str | None,
        auth_time: float | None,
    ) -> str:
        claims: dict[str, Any] = dict(user_info(user, str(token.get("scope", ""))))
        claims.pop("sub", None)
        at_hash = create_half_hash(token["access_token"], ALGORITHMS[0])
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode("ascii")
        issuer = self.svc.tokens.issuer(ctx.tenant_id, ctx.issuer, ctx.now)
        return issuer.issue_id_token(
            user.id,
            client.client_id,
            claims,
            ctx.now,
            self.svc.tokens.id_ttl_s,
            nonce=nonce,
            auth_time=auth_time if auth_time is not None else ctx.now,
        )

    def save_token(self, ctx: Ctx, token: dict[str, Any], request: OAuth2Request) -> None:
        """authlib's save_token: store the refresh token (hashed) and audit the issue."""
        grant_type = request.payload.grant_type
        client: Client = request.client
        user: AuthUser | None = request.user
        actor = f"user:{user.id}" if user is not None else f"client:{client.client_id}"
        event: dict[str, Any] = {
            "tenant_id": ctx.tenant_id,
            "actor": actor,
            "action": "token",
            "target": client.client_id,
            "source": ctx.source,
            "detail": {"grant_type": grant_type, "scope": token.get("scope", "")},
        }
        code: CodeRecord | None = request.authorization_code
        if not (token.get("refresh_token") and user is not None) and code is None:
            # Only the audit row to write (client_credentials): one Core INSERT, no ORM session.
            with ctx.write_rows() as conn:
                audit.insert(conn, **event)
            return
        with ctx.write() as s:
            family: str | None = None
            if token.get("refresh_token") and user is not None:
                previous: RefreshRecord | None = request.refresh_token
                roles = previous.roles if previous is not None else user.roles
                if previous is not None:
                    family = previous.family_id
                    if user.source == "ldap":
                        expires = previous.expires_at  # absolute lifetime: see the module doc
                    else:
                        expires = ctx.now + self.settings.refresh_ttl_s
                else:
                    family = new_id("rtf")
                    ttl = (
                        self.settings.ldap_refresh_ttl_s
                        if user.source == "ldap"
                        else self.settings.refresh_ttl_s
                    )
                    expires = ctx.now + ttl
                stored_scope = str(token.get("scope", ""))
                if roles:
                    stored_scope += _ROLES_SEP + ",".join(roles)
                access = _unverified_claims(str(token.get("access_token", "")))
                s.add(
                    RefreshToken(
                        id=new_id("rft"),
                        tenant_id=ctx.tenant_id,
                        family_id=family,
                        token_hash=hash_secret(token["refresh_token"]),
                        subject_kind="user",
                        subject_id=user.id,
                        client_id=client.client_id,
                        scope=stored_scope,
                        created_at=ctx.now,
                        expires_at=expires,
                        access_jti=str(access.get("jti") or "") or None,
                        access_expires_at=float(access.get("exp") or 0) or None,
                    )
                )
            if code is not None and family is not None:
                s.execute(
                    update(AuthCode)
                    .where(AuthCode.code_hash == code.code_hash)
                    .values(family_id=family)
                )
            audit.insert(s, **event)

    def claim_refresh_token(self, ctx: Ctx, presented: str, grant: Any) -> RefreshRecord | None:
        """Mark the refresh token used and return it; a reused one revokes its whole family."""
        client: Client = grant.request.client
        if len(presented) > 256:
            return None
        digest = hash_secret(presented)
        reused: RefreshRecord | None = None
        with ctx.write() as s:
            row = s.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest))
            if row is None or row.tenant_id != ctx.tenant_id or row.client_id != client.client_id:
                return None
            record = RefreshRecord.of(row, ctx.now)
            if record.revoked_at is not None or record.is_expired():
                return None
            grant._validate_token_scope(record)  # before spending the token
            claimed = s.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.id == row.id,
                    RefreshToken.used_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                )
                .values(used_at=ctx.now)
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return record
            reused = record
            self._revoke_family(s, ctx, record.family_id)
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=f"user:{record.subject_id}",
                action="token.reuse",
                target=client.client_id,
                outcome="denied",
                source=ctx.source,
                detail={"family_id": record.family_id, "kind": "refresh_token"},
            )
        assert reused is not None
        raise InvalidGrantError("The refresh token was already used; its family is revoked.")

    def _revoke_family(self, s: Session, ctx: Ctx, family_id: str) -> int:
        """Revoke every refresh token of the family and every access token issued with them
        that has not expired yet (RFC 6749 section 4.1.2, RFC 9700 section 4.14.2)."""
        live = s.execute(
            select(RefreshToken.access_jti, RefreshToken.access_expires_at).where(
                RefreshToken.tenant_id == ctx.tenant_id,
                RefreshToken.family_id == family_id,
                RefreshToken.access_jti.is_not(None),
                RefreshToken.access_expires_at > ctx.now,
            )
        ).all()
        for jti, exp in live:
            if jti and exp and s.get(RevokedToken, jti) is None:
                s.add(RevokedToken(jti=jti, tenant_id=ctx.tenant_id, expires_at=exp))
                # At once in this process (a rollback would only over-revoke).
                self.authn.revoke_jti(jti, exp)
        result = s.execute(
            update(RefreshToken)
            .where(
                RefreshToken.tenant_id == ctx.tenant_id,
                RefreshToken.family_id == family_id,
                RefreshToken.revoked_at.is_(None),
            )
            .values(revoked_at=ctx.now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def save_code(self, ctx: Ctx, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        user: AuthUser = request.user
        with ctx.write() as s:
            s.add(
                AuthCode(
                    code_hash=hash_secret(code),
                    tenant_id=ctx.tenant_id,
                    client_id=request.client.client_id,
                    user_id=user.id,
                    redirect_uri=data.get("redirect_uri") or "",
                    code_challenge=data["code_challenge"],
                    scope=request.scope or "",
                    nonce=data.get("nonce"),
                    created_at=ctx.now,
                    expires_at=ctx.now + self.settings.code_ttl_s,
                )
            )

    def claim_code(self, ctx: Ctx, code: str, client: Client) -> CodeRecord | None:
        """Mark the code used and return it; a replayed code revokes the family it issued."""
        if len(code) > 256:
            return None
        digest = hash_secret(code)
        with ctx.write() as s:
            row = s.get(AuthCode, digest)
            if row is None or row.tenant_id != ctx.tenant_id or row.client_id != client.client_id:
                return None
            record = CodeRecord(
                row.code_hash,
                row.client_id,
                row.user_id,
                row.redirect_uri,
                row.code_challenge,
                row.scope,
                row.nonce,
                row.created_at,
            )
            if row.used_at is None and ctx.now < row.expires_at:
                claimed = s.execute(
                    update(AuthCode)
                    .where(AuthCode.code_hash == digest, AuthCode.used_at.is_(None))
                    .values(used_at=ctx.now)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    return record
            if row.used_at is None:
                return None  # expired
            revoked = self._revoke_family(s, ctx, row.family_id) if row.family_id else 0
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=f"user:{row.user_id}",
                action="token.reuse",
                target=client.client_id,
                outcome="denied",
                source=ctx.source,
                detail={
                    "kind": "authorization_code",
                    "family_id": row.family_id,
                    "revoked": revoked,
                },
            )
        raise InvalidGrantError("The authorization code was already used; its tokens are revoked.")

    def verify_access(self, ctx: Ctx, token: str) -> AccessTokenRecord | None:
        """The access token if it is valid and was issued by this tenant's issuer."""
        if token.count(".") != 2 or len(token) > self.settings.max_field_chars:
            return None
        ctx.release()  # the authenticator may read the database with its own session
        try:
            claims = self.authn.verify_access_token(
                token, now=ctx.now, request_base=ctx.request_base
            )
        except Unauthorized:
            return None
        if claims.get("iss") != ctx.issuer or claims.get("tid") != ctx.tenant_id:
            return None
        return AccessTokenRecord(token, claims)

    def find_token(self, ctx: Ctx, token: str) -> AccessTokenRecord | RefreshRecord | None:
        if token.count(".") == 2:
            return self.verify_access(ctx, token)
        if len(token) > 256:
            return None
        row = ctx.reader.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == hash_secret(token))
        )
        if row is None or row.tenant_id != ctx.tenant_id:
            return None
        return RefreshRecord.of(row, ctx.now)

    def revoke(self, ctx: Ctx, token: AccessTokenRecord | RefreshRecord, client: Client) -> None:
        with ctx.write() as s:
            if isinstance(token, AccessTokenRecord):
                jti, exp = str(token.claims.get("jti", "")), float(token.claims["exp"])
                if jti and s.get(RevokedToken, jti) is None:
                    s.add(RevokedToken(jti=jti, tenant_id=ctx.tenant_id, expires_at=exp))
                detail: dict[str, Any] = {"kind": "access_token", "jti": jti}
                subject = str(token.claims.get("sub", ""))
            else:
                self._revoke_family(s, ctx, token.family_id)
                detail = {"kind": "refresh_token", "family_id": token.family_id}
                subject = token.subject_id
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=f"client:{client.client_id}",
                action="revoke",
                target=subject,
                source=ctx.source,
                detail=detail,
            )
        if isinstance(token, AccessTokenRecord) and detail["jti"]:
            self.authn.revoke_jti(detail["jti"], float(token.claims["exp"]))

    def logout(self, ctx: Ctx, user_id: str, audience: Any) -> None:
        client_ids = [audience] if isinstance(audience, str) else list(audience or ())
        with ctx.write() as s:
            result = s.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.tenant_id == ctx.tenant_id,
                    RefreshToken.subject_kind == "user",
                    RefreshToken.subject_id == user_id,
                    RefreshToken.client_id.in_([str(c) for c in client_ids]),
                    RefreshToken.revoked_at.is_(None),
                )
                .values(revoked_at=ctx.now)
            )
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=f"user:{user_id}",
                action="logout",
                target=",".join(str(c) for c in client_ids),
                source=ctx.source,
                detail={"revoked_refresh_tokens": int(result.rowcount)},  # type: ignore[attr-defined]
            )


def _unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT this provider just minted (read back for its jti and exp)."""
    try:
        part = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
