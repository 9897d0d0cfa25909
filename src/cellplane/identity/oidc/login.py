"""Password logins and lockout: the per-address throttle, the per-account lock charged before the
check, familiar addresses, argon2 verification and LDAP federation (see the package docstring).

Called by authlib's password grant (`adapters.PasswordGrant`) and by the login form
(`authorize.py`) through `OidcProvider.check_password`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
)
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from cellplane.identity.oidc.core import OidcProviderCore
from cellplane.identity.oidc.records import (
    AuthUser,
    Ctx,
    SlowDown,
    _Account,
    _Refund,
)
from cellplane.identity.oidc.settings import (
    LOGIN_FAILED,
    log,
)
from cellplane.identity.passwords import (
    hash_password,
    needs_rehash,
    verify_password,
)
from cellplane.ids import new_id, utcnow
from cellplane.sealing import BIND_SECRET_COLUMN, Sealer
from cellplane.services import audit
from cellplane.state.identity_models import (
    AuditEvent,
    LdapConfig,
    User,
)
from cellplane.validation import user_name


class LoginMixin(OidcProviderCore):
    """Password checks of `OidcProvider`."""

    def check_password(self, ctx: Ctx, username: str, password: str) -> AuthUser:
        """The user if `password` is theirs; InvalidGrantError(LOGIN_FAILED) otherwise, or
        SlowDown (429) when this address has no failed login left (see the module doc)."""
        st = self.settings
        if len(username) > st.max_username_chars or len(password) > st.max_password_chars:
            raise InvalidRequestError("'username' or 'password' is too long.")
        username = user_name(username)  # case-insensitive (services/directory.py)
        source_key = (ctx.tenant_id, ctx.source)
        wait = self.source_failures.take(source_key, self.clock())
        if wait is not None:
            self._login_failed(ctx, username, None, "throttled", error=SlowDown(wait))
        try:
            user = self._check_password(ctx, username, password)
        except _Refund as refund:
            self.source_failures.refund(source_key)
            raise refund.error from None
        self.source_failures.refund(source_key)  # a good login spends no failure
        return user

    def _check_password(self, ctx: Ctx, username: str, password: str) -> AuthUser:
        now = ctx.now
        row = ctx.reader.scalar(
            select(User).where(User.tenant_id == ctx.tenant_id, User.name == username)
        )
        account = _Account.of(row) if row is not None else None
        ldap_cfg = None
        if account is None or account.source == "ldap":
            ldap_cfg = ctx.reader.get(LdapConfig, ctx.tenant_id)
        ctx.release()  # argon2 and LDAP need no connection; the writes below take their own
        if account is not None and account.disabled:
            verify_password(None, password)  # the same work as a real check
            self._login_failed(ctx, username, account.id, "disabled")
        if account is not None and account.source != "local" and ldap_cfg is None:
            account = None  # a directory user of a tenant that no longer federates
        if account is None and ldap_cfg is None:
            verify_password(None, password)
            self._login_failed(ctx, username, None, "unknown user")
        charged: int | None = None
        if account is not None:
            charged = self._charge_failure(ctx, account.id)
            if charged is None and not self._is_familiar(ctx, account.id):
                verify_password(None, password)
                self._login_failed(ctx, username, account.id, "locked")
        if ldap_cfg is not None:
            return self._ldap_login(ctx, ldap_cfg, username, password, account, charged)
        assert account is not None
        if not verify_password(account.password_hash, password):
            lock = charged is not None and charged >= self.settings.max_failures
            self._login_failed(ctx, username, account.id, "wrong password", lock=lock)
        with ctx.write() as s:
            self._forget_failures(s, account.id, now)
            stored = s.get(User, account.id)
            if stored is not None and stored.password_hash and needs_rehash(stored.password_hash):
                stored.password_hash = hash_password(password)
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=f"user:{account.id}",
                action="login",
                target=account.name,
                source=ctx.source,
            )
        self._remember_familiar(ctx, account.id)
        return AuthUser(
            account.id, account.name, account.email, account.display_name, "local", (), now
        )

    def _charge_failure(self, ctx: Ctx, user_id: str) -> int | None:
        """Count one failure against the account *before* the password is checked (one atomic
        UPDATE ... RETURNING); its position in the window, or None when the account is locked
        or this attempt is past ``max_failures`` (then there is no real check)."""
        now, st = ctx.now, self.settings
        lock_over = User.locked_until.is_not(None)
        restart = or_(
            User.last_failure_at.is_(None),
            User.last_failure_at <= now - st.failure_window_s,
            lock_over,  # only rows whose lock has ended reach the UPDATE below
        )
        stmt = (
            update(User)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(
                failed_logins=case((restart, 1), else_=func.coalesce(User.failed_logins, 0) + 1),
                last_failure_at=now,
                locked_until=None,
            )
            .returning(User.failed_logins)
            .execution_options(synchronize_session=False)
        )
        with ctx.write() as s:
            n = s.execute(stmt).scalar_one_or_none()
        if n is None or int(n) > st.max_failures:
            return None
        return int(n)

    def _forget_failures(self, s: Session, user_id: str, now: float) -> None:
        """A good login clears the account's failures, unless it is locked (a familiar address
        signing in does not lift the lock for everyone else)."""
        s.execute(
            update(User)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(failed_logins=0, last_failure_at=None, locked_until=None)
            .execution_options(synchronize_session=False)
        )

    def _remember_familiar(self, ctx: Ctx, user_id: str) -> None:
        if not ctx.source:
            return
        key = (ctx.tenant_id, user_id, ctx.source)
        with self._familiar_lock:
            self._familiar.pop(key, None)
            self._familiar[key] = ctx.now
            while len(self._familiar) > 100_000:
                self._familiar.popitem(last=False)

    def _is_familiar(self, ctx: Ctx, user_id: str) -> bool:
        """Whether this user signed in from this address within ``familiar_ttl_s``: remembered
        in memory, else found in the audit log (so it survives a restart). Only asked for a
        locked account, by an address its own throttle admits."""
        if not ctx.source:
            return False
        ttl = self.settings.familiar_ttl_s
        with self._familiar_lock:
            seen = self._familiar.get((ctx.tenant_id, user_id, ctx.source))
        if seen is not None and ctx.now - seen < ttl:
            return True
        since = datetime.fromtimestamp(ctx.now - ttl, UTC)
        found = ctx.reader.scalar(
            select(AuditEvent.id)
            .where(
                AuditEvent.tenant_id == ctx.tenant_id,
                AuditEvent.at >= since,
                AuditEvent.actor == f"user:{user_id}",
                AuditEvent.action == "login",
                AuditEvent.outcome == "success",
                AuditEvent.source == ctx.source,
            )
            .limit(1)
        )
        ctx.release()
        if found is not None:
            self._remember_familiar(ctx, user_id)
        return found is not None

    def _login_failed(
        self,
        ctx: Ctx,
        username: str,
        user_id: str | None,
        reason: str,
        *,
        lock: bool = False,
        error: OAuth2Error | None = None,
        refund: bool = False,
    ) -> NoReturn:
        """Audit the failure (and lock the account when it reached its last failure), then
        raise the one login error (``refund``: the address's failure is given back)."""
        now = ctx.now
        actor = f"user:{user_id}" if user_id else "anonymous"
        with ctx.write() as s:
            if user_id is not None and lock:
                until = now + self.settings.lock_s
                locked = s.execute(
                    update(User)
                    .where(
                        User.id == user_id,
                        or_(User.locked_until.is_(None), User.locked_until <= now),
                    )
                    .values(locked_until=until)
                    .execution_options(synchronize_session=False)
                )
                if locked.rowcount == 1:  # type: ignore[attr-defined]
                    audit.record(
                        s,
                        tenant_id=ctx.tenant_id,
                        actor=actor,
                        action="lockout",
                        target=username[:128],
                        outcome="denied",
                        source=ctx.source,
                        detail={"until": until},
                    )
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=actor,
                action="login",
                target=username[:128],
                outcome="failure",
                source=ctx.source,
                detail={"reason": reason},
            )
        err = error if error is not None else InvalidGrantError(LOGIN_FAILED)
        if refund:
            raise _Refund(err)
        raise err

    def _ldap_login(
        self,
        ctx: Ctx,
        cfg: LdapConfig,
        username: str,
        password: str,
        account: _Account | None,
        charged: int | None,
    ) -> AuthUser:
        try:
            from cellplane.identity import ldap
        except ImportError:
            self._login_failed(ctx, username, None, "ldap unavailable", refund=True)
        try:
            ldap.HostPolicy.from_env().check(cfg.url)  # the operator may have narrowed it since
            found = ldap.authenticate(
                _ldap_settings(ldap, cfg, self.svc.sealer), username, password
            )
        except (ldap.LdapError, ValueError, TypeError) as exc:
            log.warning("LDAP login of tenant %s failed: %s", ctx.tenant, exc)
            self._login_failed(ctx, username, None, "directory unavailable", refund=True)
        if found is None:
            lock = charged is not None and charged >= self.settings.max_failures
            user_id = account.id if account else None
            self._login_failed(ctx, username, user_id, "wrong password", lock=lock)
        with ctx.write() as s:
            row = s.scalar(
                select(User).where(User.tenant_id == ctx.tenant_id, User.name == username)
            )
            if row is None:
                row = User(
                    id=new_id("usr"),
                    tenant_id=ctx.tenant_id,
                    name=username,
                    source="ldap",
                    password_hash=None,
                    disabled=False,
                    failed_logins=0,
                    created_at=utcnow(),
                )
                s.add(row)
            row.email = found.email
            row.display_name = found.display_name
            s.flush()
            self._forget_failures(s, row.id, ctx.now)
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=f"user:{row.id}",
                action="login",
                target=username,
                source=ctx.source,
                detail={"via": "ldap", "roles": list(found.roles)},
            )
            result = AuthUser(
                row.id, row.name, row.email, row.display_name, "ldap", tuple(found.roles), ctx.now
            )
        self._remember_familiar(ctx, result.id)
        return result


def _ldap_settings(ldap: Any, cfg: LdapConfig, sealer: Sealer) -> Any:
    """`cellplane.identity.ldap.LdapSettings` of a tenant's LdapConfig row.

    ``attributes`` holds the user attribute names (username, email, display_name) and may name
    the group name attribute as ``group_name_attribute``; empty filters take the defaults.
    """
    attrs = {str(k): str(v) for k, v in (cfg.attributes or {}).items()}
    kwargs: dict[str, Any] = {
        "url": cfg.url,
        "bind_dn": cfg.bind_dn,
        "bind_password": sealer.open(cfg.bind_secret, BIND_SECRET_COLUMN),
        "user_base": cfg.user_base,
        "group_base": cfg.group_base,
        "group_roles": {str(k): str(v) for k, v in (cfg.group_roles or {}).items()},
    }
    if "group_name_attribute" in attrs:
        kwargs["group_name_attribute"] = attrs.pop("group_name_attribute")
    if attrs:
        kwargs["attributes"] = attrs
    if cfg.user_filter:
        kwargs["user_filter"] = cfg.user_filter
    if cfg.group_filter:
        kwargs["group_filter"] = cfg.group_filter
    return ldap.LdapSettings(**kwargs)
