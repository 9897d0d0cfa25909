"""The provider's state and request plumbing: one `Ctx` per request, authlib requests, the
endpoints that run through authlib (token, revoke, introspect, userinfo, logout), client and user
lookup.

The base of `OidcProvider` (`provider.py`); the login, token store, discovery and authorization
mixins build on it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from authlib.oauth2.rfc6749 import (
    InsecureTransportError,
    InvalidGrantError,
    InvalidRequestError,
)
from sqlalchemy import Table, bindparam, select

from cellplane.errors import NotFound
from cellplane.identity.oidc.adapters import TenantServer
from cellplane.identity.oidc.answers import Reply, message
from cellplane.identity.oidc.lookups import Lookups
from cellplane.identity.oidc.records import (
    _BUILTIN,
    AuthUser,
    Client,
    Ctx,
    FormRequest,
    _ascii,
    portal_client,
)
from cellplane.identity.oidc.settings import (
    BUILTIN_CLIENT_ID,
    PORTAL_CLIENT_ID,
    OidcSettings,
    settings_of,
)
from cellplane.identity.ratelimit import RateLimiter
from cellplane.identity.rbac import claims_of_roles, roles_of
from cellplane.state.identity_models import (
    OAuthClient,
    User,
)
from cellplane.state.models import Tenant

if TYPE_CHECKING:
    from cellplane.identity.authn import Authenticator
    from cellplane.identity.oidc.provider import OidcProvider
    from cellplane.services.context import Services

T = TypeVar("T")

# Core statements of the per-request lookups (the token endpoint's hot path).
_TENANTS = cast(Table, Tenant.__table__)
_CLIENTS = cast(Table, OAuthClient.__table__)
_TENANT_BY_NAME = select(_TENANTS.c.id, _TENANTS.c.name).where(_TENANTS.c.name == bindparam("name"))
_CLIENT_BY_ID = select(
    _CLIENTS.c.id,
    _CLIENTS.c.tenant_id,
    _CLIENTS.c.name,
    _CLIENTS.c.secret_hash,
    _CLIENTS.c.redirect_uris,
    _CLIENTS.c.grant_types,
).where(_CLIENTS.c.id == bindparam("id"))

# --- the provider -----------------------------------------------------------------------------


class OidcProviderCore:
    """State shared by the provider's parts: settings, clock, rate limiters, familiar addresses."""

    def __init__(
        self,
        svc: Services,
        authenticator: Authenticator,
        settings: OidcSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.svc = svc
        self.authn = authenticator
        self.settings = settings or settings_of(svc)
        #: Overridable clock (tests move time instead of sleeping).
        self.clock = clock
        s = self.settings
        self.limiter = RateLimiter(s.rate_per_s, s.rate_burst)
        #: Failed password logins per (tenant id, client address); see the module doc.
        self.source_failures = RateLimiter(
            1.0 / s.source_failure_interval_s, float(s.source_max_failures)
        )
        #: (tenant id, user id, address) -> when that user last signed in from there.
        self._familiar: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._familiar_lock = threading.Lock()
        self._form_key: bytes | None = None
        #: Tenant, client and role lookups of the token endpoint (see `lookups`).
        self.lookups = Lookups(s.lookup_cache_s)

    # -- requests ------------------------------------------------------------------------------

    def run(self, tenant: str, request_base: str, source: str, fn: Callable[[Ctx], T]) -> T:
        """fn(ctx) for a request to `tenant`'s issuer (NotFound when there is no such tenant);
        the request's read session is closed afterwards. One worker-thread call per request."""
        ctx = self.context(tenant, request_base, source)
        try:
            return fn(ctx)
        finally:
            ctx.close()

    def context(self, tenant: str, request_base: str, source: str) -> Ctx:
        """Ctx for `tenant` (NotFound when there is no such tenant); the caller closes it."""
        ctx = Ctx(
            # The core only ever runs as part of an OidcProvider (provider.py), which the
            # adapters reach through ctx.provider.
            provider=cast("OidcProvider", self),
            tenant_id="",
            tenant=tenant,
            issuer="",
            request_base=request_base.rstrip("/"),
            now=self.clock(),
            source=source[:64],
            secure=False,
        )
        row = None
        if len(tenant) <= 63:
            row = self.lookups.get(("tenant", tenant), lambda: self._tenant_row(ctx, tenant))
        if row is None:
            ctx.close()
            raise NotFound(f"no identity issuer for tenant {tenant!r}")
        ctx.tenant_id, ctx.tenant = row
        ctx.issuer = self.authn.issuer_url(ctx.tenant, ctx.request_base)
        ctx.secure = ctx.issuer.startswith("https://")
        return ctx

    @staticmethod
    def _tenant_row(ctx: Ctx, tenant: str) -> tuple[str, str] | None:
        # Core on the session's connection: one per request, so no ORM layer.
        row = ctx.reader.connection().execute(_TENANT_BY_NAME, {"name": tenant}).first()
        return None if row is None else (row.id, row.name)

    def rate_limited(self, tenant: str, source: str) -> float | None:
        return self.limiter.take((tenant[:64], source), self.clock())

    def _run(self, ctx: Ctx, fn: Callable[[TenantServer], Reply]) -> Reply:
        return fn(TenantServer(ctx))

    def request(
        self,
        ctx: Ctx,
        method: str,
        path: str,
        headers: Mapping[str, str],
        pairs: list[tuple[str, str]],
    ) -> FormRequest:
        """An authlib request whose URI is the issuer's (public) URL of `path`.

        authlib refuses plain http except on loopback addresses (RFC 6749 section 3.1,
        RFC 8252 section 7.3); the scheme checked is the public URL's, so a TLS-terminating
        proxy in front of the server is fine.
        """
        base = ctx.issuer[: -len(f"/identity/{ctx.tenant}")]
        return FormRequest(ctx, method, base + path, headers, pairs)

    def endpoint(
        self,
        ctx: Ctx,
        name: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        pairs: list[tuple[str, str]],
    ) -> Reply:
        """POST /token (name "token"), /revoke, /introspect, /userinfo."""

        def go(server: TenantServer) -> Reply:
            try:
                req = self.request(ctx, method, path, headers, pairs)
            except InsecureTransportError as exc:
                return server.handle_error_response(None, exc)  # type: ignore[no-any-return]
            too_long = [
                k
                for k, v in req.payload.datalist.items()
                for x in v
                if len(x) > self.settings.max_field_chars
            ]
            if too_long:
                err = InvalidRequestError(f"'{_ascii(too_long[0])}' is too long.")
                return server.handle_error_response(req, err)  # type: ignore[no-any-return]
            repeated = [k for k, v in req.payload.datalist.items() if len(v) > 1]
            if repeated:
                err = InvalidRequestError(f"'{_ascii(repeated[0])}' is repeated.")
                return server.handle_error_response(req, err)  # type: ignore[no-any-return]
            if name == "token":
                return server.create_token_response(req)  # type: ignore[no-any-return]
            resp = server.create_endpoint_response(name, req)
            if resp is None:  # end_session without a redirect
                return message("Signed out", "You are signed out.", 200)
            return resp  # type: ignore[no-any-return]

        return self._run(ctx, go)

    # -- clients, users ------------------------------------------------------------------------

    def client(self, ctx: Ctx, client_id: str) -> Client | None:
        if client_id in ctx._clients:
            return ctx._clients[client_id]
        found: Client | None = None
        if client_id == BUILTIN_CLIENT_ID:
            found = _BUILTIN
        elif client_id == PORTAL_CLIENT_ID:
            found = portal_client(ctx.issuer, ctx.tenant)
        elif 0 < len(client_id) <= 40:
            found = self.lookups.get(
                ("client", ctx.tenant_id, client_id), lambda: self._client_row(ctx, client_id)
            )
        ctx._clients[client_id] = found
        return found

    @staticmethod
    def _client_row(ctx: Ctx, client_id: str) -> Client | None:
        row = ctx.reader.connection().execute(_CLIENT_BY_ID, {"id": client_id}).first()
        if row is None or row.tenant_id != ctx.tenant_id:
            return None
        return Client(
            row.id,
            row.name,
            row.secret_hash,
            list(row.redirect_uris or ()),
            list(row.grant_types or ()),
        )

    def claims(
        self,
        ctx: Ctx,
        subject_kind: str,
        subject_id: str,
        name: str,
        extra_roles: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """`rbac.claims_for` of a user or client of the request's tenant, with its role
        assignments from `lookups`."""
        tenant_id = ctx.tenant_id
        roles, projects = cast(
            "tuple[tuple[str, ...], dict[str, tuple[str, ...]]]",
            self.lookups.get(
                ("roles", tenant_id, subject_kind, subject_id),
                lambda: roles_of(ctx.reader, tenant_id, subject_kind, subject_id),
            ),
        )
        if extra_roles:
            roles = tuple(sorted({*roles, *extra_roles}))
        return claims_of_roles(
            tenant_id=tenant_id,
            tenant=ctx.tenant,
            subject_kind=subject_kind,
            name=name,
            roles=roles,
            projects=projects,
        )

    def active_user(
        self,
        ctx: Ctx,
        user_id: str,
        *,
        roles: tuple[str, ...] = (),
        auth_time: float | None = None,
    ) -> AuthUser:
        """The user a code or refresh token stands for, if they still may sign in."""
        row = ctx.reader.get(User, user_id)
        if row is None or row.tenant_id != ctx.tenant_id or row.disabled:
            raise InvalidGrantError("The user of this grant can no longer sign in.")
        return AuthUser(row.id, row.name, row.email, row.display_name, row.source, roles, auth_time)
