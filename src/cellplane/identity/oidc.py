"""The OpenID Connect provider: one issuer per tenant, at ``{public_url}/identity/{tenant}``.

The protocol is authlib's: an :class:`authlib.oauth2.rfc6749.AuthorizationServer` subclass (built
per request, for the tenant in the URL) with authlib's grant classes (password, client
credentials, refresh token, authorization code + PKCE), its OIDC extensions (ID tokens), and its
revocation (RFC 7009), introspection (RFC 7662), userinfo and RP-initiated logout endpoints. This
module supplies what authlib leaves to the application: storage callbacks against the identity
models, client and user lookup, and the token generator, which mints JWTs with the tenant's own
:class:`~cellplane.identity.tokens.TokenIssuer` (RS256, ``kid`` header, RFC 9068 access tokens).

authlib is synchronous; the routes (``api/routes_identity.py``) read the request body in the
event loop, build a :class:`FormRequest` and call the provider in a worker thread.

Storage and hardening decisions:

* Refresh tokens and authorization codes are opaque 256-bit random strings, stored as SHA-256.
  A refresh token is *claimed* (marked used, with a conditional UPDATE, so two concurrent uses
  cannot both win) when presented; the grant then issues the next token of the same family.
  Presenting a used refresh token revokes the whole family (reuse detection). A code is claimed
  the same way when redeemed; a replayed code is refused and the refresh family it issued is
  revoked (RFC 6749 section 4.1.2). A code or refresh token presented with a wrong PKCE verifier,
  redirect URI or scope is spent all the same.
* PKCE is mandatory for the authorization code grant, and only ``S256`` is accepted.
* Password logins: unknown users cost one argon2 verification against a dummy hash; every
  failure (unknown user, wrong password, locked, disabled, directory down) answers the same
  ``invalid_grant`` description. Guessing is throttled per source before per account (so an
  attacker is slowed down rather than the owner locked out; docs/identity.md):

  - per (tenant, client address): a token bucket of ``source_max_failures`` failed logins,
    refilled by one every ``source_failure_interval_s``. A slot is reserved *before* the
    password is checked and given back on success, so parallel guesses cannot overrun it; a
    source without a slot answers 429 at once (no argon2 work, no account counted).
  - per account: ``max_failures`` failures, each within ``failure_window_s`` of the previous
    one (``User.last_failure_at``; the window slides), lock it for ``lock_s``; it unlocks by
    itself. The counter is charged *before* the check by one atomic ``UPDATE ... SET
    failed_logins = failed_logins + 1 ... RETURNING``, so N parallel guesses get at most
    ``max_failures`` real checks. With the defaults one address can never lock an account
    (5 < 10, and its next guess comes only after the window has passed).
  - a locked account still admits sign-in from a *familiar* address (one this user signed in
    from within ``familiar_ttl_s``, by the audit log), still under that address's throttle.

  A stale argon2 hash is rehashed after a good login.
* LDAP federation: when the tenant has an :class:`LdapConfig` and no *local* user of that name
  exists, the password is checked against the directory (``cellplane.identity.ldap``, imported
  lazily) and a ``source="ldap"`` user row is upserted. The roles the directory groups map to go
  into the access token; the refresh family keeps them (in ``RefreshToken.scope``, after a
  newline: OAuth scopes never contain one) because the directory cannot be asked about a user's
  groups again without their password. So they cannot go stale for long, an LDAP family has an
  absolute lifetime of ``ldap_refresh_ttl_s`` (rotation does not extend it); local users' refresh
  tokens live ``refresh_ttl_s`` from their last use.
* The token and login endpoints are rate limited per (tenant, client address) by a token bucket.
* Every authentication event is audited: ``login``, ``lockout``, ``token`` (per grant),
  ``token.reuse`` (refresh reuse and code replay), ``revoke``, ``logout``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn, TypeVar
from urllib.parse import urlencode, urlsplit

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationServer,
    ClientCredentialsGrant,
    ClientMixin,
    InsecureTransportError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
    ResourceProtector,
    TokenMixin,
    list_to_scope,
    scope_to_list,
)
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode, OpenIDToken, UserInfo, UserInfoEndpoint
from authlib.oidc.core.grants.util import create_half_hash
from authlib.oidc.discovery import OpenIDProviderMetadata
from authlib.oidc.rpinitiated import EndSessionEndpoint
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, JSONResponse, Response

from cellplane.errors import NotFound, Unauthorized
from cellplane.identity.passwords import (
    generate_secret,
    hash_password,
    hash_secret,
    needs_rehash,
    verify_password,
    verify_secret,
)
from cellplane.identity.ratelimit import RateLimiter
from cellplane.identity.rbac import claims_for
from cellplane.identity.signing import ACCESS_TOKEN_AUDIENCE, ALGORITHMS
from cellplane.ids import new_id, utcnow
from cellplane.services import audit
from cellplane.state.identity_models import (
    AuditEvent,
    AuthCode,
    LdapConfig,
    OAuthClient,
    RefreshToken,
    RevokedToken,
    User,
)
from cellplane.state.models import Setting, Tenant
from cellplane.validation import user_name

if TYPE_CHECKING:
    from cellplane.identity.authn import Authenticator
    from cellplane.services.context import Services

__all__ = [
    "BUILTIN_CLIENT_ID",
    "GRANT_TYPES",
    "LOGIN_FAILED",
    "SCOPES_SUPPORTED",
    "AuthUser",
    "Ctx",
    "FormRequest",
    "OidcProvider",
    "OidcSettings",
    "RateLimiter",
    "settings_of",
]

log = logging.getLogger("cellplane.oidc")
T = TypeVar("T")

#: The public client every tenant accepts (the `cellplane` CLI); it is not stored.
BUILTIN_CLIENT_ID: Final = "cellplane-cli"
SCOPES_SUPPORTED: Final = ("openid", "profile", "email")
GRANT_TYPES: Final = ("authorization_code", "password", "client_credentials", "refresh_token")
AUTH_METHODS: Final = ("client_secret_basic", "client_secret_post", "none")
_CONFIDENTIAL: Final = ("client_secret_basic", "client_secret_post")
#: The one answer to every failed password login, whatever the reason.
LOGIN_FAILED: Final = "The username or password is incorrect, or the account cannot sign in now."
#: Parameters of an authorization request carried through the login form.
AUTHZ_PARAMS: Final = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
)
_FORM_KEY_SETTING: Final = "identity.form_key"
_CSRF_COOKIE: Final = "cp_authz"
_MAX_NONCE: Final = 512
_MAX_URI: Final = 2048
_ROLES_SEP: Final = "\n"


@dataclass(frozen=True)
class OidcSettings:
    """Tunables of the provider. Read from ``Services.oidc`` when present (see `settings_of`)."""

    #: Account lock: failures (each within the window of the previous one) before it locks.
    max_failures: int = 10
    failure_window_s: float = 300.0
    lock_s: float = 300.0
    #: Per (tenant, client address): failed logins allowed at once, then one per interval.
    source_max_failures: int = 5
    source_failure_interval_s: float = 300.0
    #: A locked account still admits addresses its user signed in from within this time.
    familiar_ttl_s: float = 30 * 86400.0
    refresh_ttl_s: float = 30 * 86400.0
    ldap_refresh_ttl_s: float = 12 * 3600.0
    code_ttl_s: float = 60.0
    #: Token-bucket rate limit of the token and login endpoints per (tenant, client address).
    rate_per_s: float = 20.0
    rate_burst: float = 40.0
    form_ttl_s: float = 900.0
    max_body_bytes: int = 64 * 1024
    max_field_chars: int = 8192
    max_username_chars: int = 128
    max_password_chars: int = 1024


def settings_of(svc: Services, environ: Mapping[str, str] | None = None) -> OidcSettings:
    """``svc.oidc`` if the Services carry one, else the defaults; then any
    ``CELLPLANE_OIDC_<FIELD>`` environment variable overrides its field (e.g.
    ``CELLPLANE_OIDC_RATE_PER_S=1000`` for a benchmark against a real server)."""
    found = getattr(svc, "oidc", None)
    settings = found if isinstance(found, OidcSettings) else OidcSettings()
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for f in fields(OidcSettings):
        raw = env.get(f"CELLPLANE_OIDC_{f.name.upper()}")
        if raw is not None:
            cast = int if isinstance(getattr(settings, f.name), int) else float
            changes[f.name] = cast(raw)
    return replace(settings, **changes) if changes else settings


# --- small pieces ---------------------------------------------------------------------------


@dataclass
class Ctx:
    """One request to one tenant's issuer."""

    provider: OidcProvider
    tenant_id: str
    tenant: str
    issuer: str
    request_base: str
    now: float
    source: str
    secure: bool
    _reader: AbstractContextManager[Session] | None = None
    _session: Session | None = None
    _clients: dict[str, Client | None] = field(default_factory=dict)

    @property
    def reader(self) -> Session:
        """The request's read session (opened on first use, again after `release`)."""
        if self._session is None:
            self._reader = self.provider.svc.db.reader()
            self._session = self._reader.__enter__()
        return self._session

    def release(self) -> None:
        """Give the read session's connection back to the pool.

        Rows read so far stay usable (detached, with the values they were read with). Called
        before anything that may take a connection of its own (a write session, the
        authenticator's lookups) and before slow work that needs none (argon2, LDAP): a request
        never holds two connections, nor one it does not use (see cellplane.state.db).
        """
        if self._reader is not None:
            if self._session is not None:
                self._session.expunge_all()  # detach without expiring what was read
            reader, self._reader, self._session = self._reader, None, None
            reader.__exit__(None, None, None)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, opened only after the read session is released."""
        self.release()
        with self.provider.svc.db.session() as s:
            yield s

    def close(self) -> None:
        self.release()


@dataclass(frozen=True)
class AuthUser:
    """A user who just authenticated (or whose code / refresh token stands for them)."""

    id: str
    name: str
    email: str | None
    display_name: str | None
    source: str = "local"
    roles: tuple[str, ...] = ()  # extra roles from the directory (LDAP users)
    auth_time: float | None = None

    def get_user_id(self) -> str:  # authlib's UserMixin
        return self.id


class SlowDown(OAuth2Error):  # type: ignore[misc]
    """Too many failed logins from this address: 429 with Retry-After, before any check."""

    error = "temporarily_unavailable"
    status_code = 429

    def __init__(self, wait_s: float) -> None:
        super().__init__(description="Too many failed sign-ins from this address; slow down.")
        self.retry_after = max(1, math.ceil(wait_s))

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return [*headers, ("Retry-After", str(self.retry_after))]


class _Refund(Exception):
    """A login failure that is not the caller's (the directory is down): the address gets its
    failed-login slot back, then ``error`` is raised."""

    def __init__(self, error: OAuth2Error) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class _Account:
    """What a password check needs of a user row (read, then the read session released)."""

    id: str
    name: str
    email: str | None
    display_name: str | None
    source: str
    disabled: bool
    password_hash: str | None

    @classmethod
    def of(cls, row: User) -> _Account:
        return cls(
            row.id,
            row.name,
            row.email,
            row.display_name,
            row.source,
            bool(row.disabled),
            row.password_hash,
        )


class Client(ClientMixin):  # type: ignore[misc]
    """An OAuth client of one tenant (a stored OAuthClient, or the built-in CLI client)."""

    def __init__(
        self,
        client_id: str,
        name: str,
        secret_hash: str | None,
        redirect_uris: Sequence[str],
        grant_types: Sequence[str],
        builtin: bool = False,
    ) -> None:
        self.client_id = client_id
        self.name = name
        self.secret_hash = secret_hash
        self.redirect_uris = tuple(str(u) for u in redirect_uris)
        self.grant_types = frozenset(str(g) for g in grant_types)
        self.builtin = builtin

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    @property
    def client_metadata(self) -> dict[str, Any]:
        # No separate column yet: a registered redirect URI may also be a post-logout one.
        return {"post_logout_redirect_uris": [] if self.builtin else list(self.redirect_uris)}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = [s for s in scope_to_list(scope) if s in SCOPES_SUPPORTED]
        return str(list_to_scope(list(dict.fromkeys(allowed))))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if len(redirect_uri) > _MAX_URI:
            return False
        if self.builtin:
            return _is_loopback_redirect(redirect_uri)
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and verify_secret(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none" and endpoint in ("token", "revocation")
        return method in _CONFIDENTIAL

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.public:
            return False
        return grant_type in self.grant_types


def _is_loopback_redirect(uri: str) -> bool:
    """RFC 8252 section 7.3: http on the loopback IP literal, any port and path."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return False
    del port  # parsed only to refuse malformed ports
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "::1")
        and not parts.username
        and not parts.password
        and not parts.fragment
    )


_BUILTIN = Client(
    BUILTIN_CLIENT_ID,
    "Cellplane CLI",
    None,
    (),
    ("password", "refresh_token", "authorization_code"),
    builtin=True,
)


class AccessTokenRecord(TokenMixin):  # type: ignore[misc]
    """A verified access token of this tenant (what revocation and introspection work on)."""

    kind = "access_token"

    def __init__(self, token: str, claims: dict[str, Any]) -> None:
        self.token = token
        self.claims = claims

    @property
    def scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def check_client(self, client: Client) -> bool:
        return bool(self.claims.get("client_id") == client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.claims["exp"]) - int(self.claims["iat"])

    def is_expired(self) -> bool:
        return False  # verified at the request's `now`

    def is_revoked(self) -> bool:
        return False  # the verifier refuses revoked jtis


@dataclass(frozen=True)
class RefreshRecord(TokenMixin):  # type: ignore[misc]
    """A snapshot of one stored refresh token."""

    id: str
    family_id: str
    subject_kind: str
    subject_id: str
    client_id: str
    scope: str
    roles: tuple[str, ...]
    created_at: float
    expires_at: float
    used_at: float | None
    revoked_at: float | None
    now: float

    kind = "refresh_token"

    @classmethod
    def of(cls, row: RefreshToken, now: float) -> RefreshRecord:
        scope, _, roles = row.scope.partition(_ROLES_SEP)
        return cls(
            id=row.id,
            family_id=row.family_id,
            subject_kind=row.subject_kind,
            subject_id=row.subject_id,
            client_id=row.client_id,
            scope=scope,
            roles=tuple(r for r in roles.split(",") if r),
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
            now=now,
        )

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - self.created_at)

    def is_expired(self) -> bool:
        return self.now >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked_at is not None or self.used_at is not None


@dataclass(frozen=True)
class CodeRecord:
    """A claimed authorization code (authlib's AuthorizationCodeMixin, OIDC flavour)."""

    code_hash: str
    client_id: str
    user_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    nonce: str | None
    created_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri or None

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return math.floor(self.created_at)

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


# --- requests ---------------------------------------------------------------------------------


class FormPayload(OAuth2Payload):  # type: ignore[misc]
    """Parameters of one request (the query of a GET, the form body of a POST)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        datalist: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            datalist[k].append(v)
        self._datalist = datalist
        self._data = {k: v[0] for k, v in datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth2Request built from what the async route already read (no I/O here)."""

    def __init__(
        self,
        ctx: Ctx,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        pairs: Iterable[tuple[str, str]],
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.ctx = ctx
        self.payload = FormPayload(pairs)

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


# --- the per-request authorization server ---------------------------------------------------


class TenantServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's AuthorizationServer for one request to one tenant's issuer."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(scopes_supported=list(SCOPES_SUPPORTED))
        self.ctx = ctx
        self.register_token_generator("default", self._generate)
        self.register_grant(PasswordGrant, [IdToken()])
        self.register_grant(ClientCredentials)
        self.register_grant(RefreshGrant, [IdToken()])
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), IdCode()])
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        self.register_endpoint(UserInfoEndpoint_(self, resource_protector=_protector(ctx)))
        self.register_endpoint(EndSession)

    # authlib callbacks

    def query_client(self, client_id: str) -> Client | None:
        return self.ctx.provider.client(self.ctx, client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.ctx.provider.save_token(self.ctx, token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("build a FormRequest in the route")

    def create_json_request(self, request: Any) -> Any:
        raise TypeError("no JSON requests here")

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        hdrs = dict(headers)
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=hdrs)
        return Response(body or b"", status_code=status, headers=hdrs)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def _generate(
        self,
        grant_type: str,
        client: Client,
        user: AuthUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return self.ctx.provider.generate_token(
            self.ctx, grant_type, client, user, scope, include_refresh_token
        )


def _server(grant: Any) -> TenantServer:
    server: TenantServer = grant.server
    return server


class PasswordGrant(ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def authenticate_user(self, username: str, password: str) -> AuthUser:
        ctx = _server(self).ctx
        return ctx.provider.check_password(ctx, username, password)


class ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(_CONFIDENTIAL)


class RefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        ctx = _server(self).ctx
        return ctx.provider.claim_refresh_token(ctx, refresh_token, self)

    def authenticate_user(self, refresh_token: RefreshRecord) -> AuthUser:
        ctx = _server(self).ctx
        first = ctx.reader.scalar(
            select(RefreshToken.created_at)
            .where(RefreshToken.family_id == refresh_token.family_id)
            .order_by(RefreshToken.created_at)
            .limit(1)
        )
        return ctx.provider.active_user(
            ctx, refresh_token.subject_id, roles=refresh_token.roles, auth_time=first
        )

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        return None  # already marked used when it was claimed


class CodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        nonce = self.request.payload.data.get("nonce")
        if nonce is not None and len(nonce) > _MAX_NONCE:
            raise InvalidRequestError("'nonce' is too long.", redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        return generate_secret(32)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        ctx = _server(self).ctx
        ctx.provider.save_code(ctx, code, request)

    def query_authorization_code(self, code: str, client: Client) -> CodeRecord | None:
        ctx = _server(self).ctx
        return ctx.provider.claim_code(ctx, code, client)

    def delete_authorization_code(self, authorization_code: CodeRecord) -> None:
        return None  # already marked used when it was claimed

    def authenticate_user(self, authorization_code: CodeRecord) -> AuthUser:
        ctx = _server(self).ctx
        return ctx.provider.active_user(
            ctx, authorization_code.user_id, auth_time=authorization_code.created_at
        )


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE required of every client, S256 only (``plain`` and a missing method are refused)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: CodeRecord) -> str:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: CodeRecord) -> str:
        return "S256"


class _IdTokenMixin:
    """ID tokens signed by the tenant's TokenIssuer (not authlib's JWT code)."""

    def encode_id_token(self, token: dict[str, Any], request: FormRequest) -> str:
        code: CodeRecord | None = request.authorization_code
        user: AuthUser = request.user
        return request.ctx.provider.id_token(
            request.ctx,
            request.client,
            user,
            token,
            nonce=code.get_nonce() if code else None,
            auth_time=user.auth_time,
        )

    def generate_user_info(self, user: AuthUser, scope: str) -> UserInfo:
        return user_info(user, scope)


class IdToken(_IdTokenMixin, OpenIDToken):  # type: ignore[misc]
    """ID tokens for the password and refresh grants (scope `openid`)."""


class IdCode(_IdTokenMixin, OpenIDCode):  # type: ignore[misc]
    """OpenID Connect for the authorization code flow (nonce, auth_time, prompt)."""

    def exists_nonce(self, nonce: str, request: FormRequest) -> bool:
        ctx = request.ctx
        found = ctx.reader.scalar(
            select(AuthCode.code_hash).where(
                AuthCode.tenant_id == ctx.tenant_id,
                AuthCode.client_id == request.payload.client_id,
                AuthCode.nonce == nonce,
            )
        )
        return found is not None


def user_info(user: AuthUser, scope: str) -> UserInfo:
    info = UserInfo(
        sub=user.id,
        name=user.display_name or user.name,
        preferred_username=user.name,
        email=user.email,
    )
    return UserInfo({k: v for k, v in info.filter(scope).items() if v is not None})


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(AUTH_METHODS)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> AccessTokenRecord | RefreshRecord | None:
        server: TenantServer = self.server
        return server.ctx.provider.find_token(server.ctx, token_string)

    def revoke_token(
        self, token: AccessTokenRecord | RefreshRecord, request: OAuth2Request
    ) -> None:
        server: TenantServer = self.server
        server.ctx.provider.revoke(server.ctx, token, request.client)


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = list(_CONFIDENTIAL)

    def query_token(
        self, token_string: str, token_type_hint: str | None
    ) -> AccessTokenRecord | RefreshRecord | None:
        server: TenantServer = self.server
        return server.ctx.provider.find_token(server.ctx, token_string)

    def check_permission(
        self, token: AccessTokenRecord | RefreshRecord, client: Client, request: OAuth2Request
    ) -> bool:
        # Any confidential client of the tenant (a resource server) may introspect its tokens;
        # query_token only finds tokens of this tenant.
        return not client.public

    def introspect_token(self, token: AccessTokenRecord | RefreshRecord) -> dict[str, Any]:
        server: TenantServer = self.server
        ctx = server.ctx
        if isinstance(token, AccessTokenRecord):
            c = token.claims
            body: dict[str, Any] = {
                k: c[k]
                for k in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")
                if k in c
            }
            body["username"] = c.get("name")
            body["token_type"] = "Bearer"
            body["tenant"] = c.get("tenant")
            return body
        return {
            "scope": token.scope,
            "client_id": token.client_id,
            "sub": token.subject_id,
            "iss": ctx.issuer,
            "exp": math.floor(token.expires_at),
            "iat": math.floor(token.created_at),
            "token_type": "refresh_token",
        }


class _Validator(BearerTokenValidator):  # type: ignore[misc]
    def __init__(self, ctx: Ctx) -> None:
        super().__init__(realm=ctx.issuer)
        self.ctx = ctx

    def authenticate_token(self, token_string: str) -> AccessTokenRecord | None:
        return self.ctx.provider.verify_access(self.ctx, token_string)


def _protector(ctx: Ctx) -> ResourceProtector:
    protector = ResourceProtector()
    protector.register_token_validator(_Validator(ctx))
    return protector


class UserInfoEndpoint_(UserInfoEndpoint):  # type: ignore[misc]
    """OIDC userinfo: a bearer access token of this tenant with scope `openid`."""

    def __call__(self, request: OAuth2Request) -> tuple[int, Any, list[tuple[str, str]]]:
        server: TenantServer = self.server
        token: AccessTokenRecord = self.resource_protector.validate_request(["openid"], request)
        if token.claims.get("kind") != "user":
            raise InvalidTokenError(description="This token does not stand for a user.")
        try:
            user = server.ctx.provider.active_user(server.ctx, str(token.claims["sub"]))
        except InvalidGrantError:
            raise InvalidTokenError() from None
        return 200, dict(self.generate_user_info(user, token.scope)), default_json_headers

    def generate_user_info(self, user: AuthUser, scope: str) -> UserInfo:
        return user_info(user, scope)


class EndSession(EndSessionEndpoint):  # type: ignore[misc]
    """RP-initiated logout: revokes the refresh families of the ID token's user and client."""

    def get_server_jwks(self) -> dict[str, Any]:
        ctx = _server(self).ctx
        return ctx.provider.svc.tokens.jwks(ctx.tenant_id, ctx.now)

    def get_algorithms(self) -> list[str]:
        return list(ALGORITHMS)

    def validate_request(self, request: OAuth2Request) -> Any:
        ctx = _server(self).ctx
        if (
            len(request.payload.data.get("id_token_hint") or "")
            > ctx.provider.settings.max_field_chars
        ):
            raise InvalidRequestError("'id_token_hint' is too long.")
        validated = super().validate_request(request)
        claims = validated.id_token_claims
        if claims is not None and claims.get("iss") != ctx.issuer:
            raise InvalidRequestError("The 'id_token_hint' was not issued by this issuer.")
        return validated

    def end_session(self, end_session_request: Any) -> None:
        ctx = _server(self).ctx
        claims = end_session_request.id_token_claims
        if claims:
            ctx.provider.logout(ctx, str(claims.get("sub", "")), claims.get("aud"))


# --- the provider -----------------------------------------------------------------------------


class OidcProvider:
    """The identity endpoints of every tenant of one server process."""

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
            provider=self,
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
            row = ctx.reader.execute(
                select(Tenant.id, Tenant.name).where(Tenant.name == tenant)
            ).first()
        if row is None:
            ctx.close()
            raise NotFound(f"no identity issuer for tenant {tenant!r}")
        ctx.tenant_id, ctx.tenant = row.id, row.name
        ctx.issuer = self.authn.issuer_url(row.name, ctx.request_base)
        ctx.secure = ctx.issuer.startswith("https://")
        return ctx

    def rate_limited(self, tenant: str, source: str) -> float | None:
        return self.limiter.take((tenant[:64], source), self.clock())

    def _run(self, ctx: Ctx, fn: Callable[[TenantServer], Response]) -> Response:
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
    ) -> Response:
        """POST /token (name "token"), /revoke, /introspect, /userinfo."""

        def go(server: TenantServer) -> Response:
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
                return _page("Signed out", "<p>You are signed out.</p>", 200)
            return resp  # type: ignore[no-any-return]

        return self._run(ctx, go)

    # -- clients, users ------------------------------------------------------------------------

    def client(self, ctx: Ctx, client_id: str) -> Client | None:
        if client_id in ctx._clients:
            return ctx._clients[client_id]
        found: Client | None = None
        if client_id == BUILTIN_CLIENT_ID:
            found = _BUILTIN
        elif 0 < len(client_id) <= 40:
            row = ctx.reader.get(OAuthClient, client_id)
            if row is not None and row.tenant_id == ctx.tenant_id:
                found = Client(
                    row.id,
                    row.name,
                    row.secret_hash,
                    list(row.redirect_uris or ()),
                    list(row.grant_types or ()),
                )
        ctx._clients[client_id] = found
        return found

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
            found = ldap.authenticate(_ldap_settings(ldap, cfg), username, password)
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
            claims = claims_for(
                ctx.reader,
                tenant_id=ctx.tenant_id,
                tenant=ctx.tenant,
                subject_kind="user",
                subject_id=user.id,
                name=user.name,
                extra_roles=user.roles,
            )
            subject = user.id
        else:
            claims = claims_for(
                ctx.reader,
                tenant_id=ctx.tenant_id,
                tenant=ctx.tenant,
                subject_kind="client",
                subject_id=client.client_id,
                name=client.name,
            )
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
            code: CodeRecord | None = request.authorization_code
            if code is not None and family is not None:
                s.execute(
                    update(AuthCode)
                    .where(AuthCode.code_hash == code.code_hash)
                    .values(family_id=family)
                )
            actor = f"user:{user.id}" if user is not None else f"client:{client.client_id}"
            audit.record(
                s,
                tenant_id=ctx.tenant_id,
                actor=actor,
                action="token",
                target=client.client_id,
                source=ctx.source,
                detail={"grant_type": grant_type, "scope": token.get("scope", "")},
            )

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

    # -- discovery -----------------------------------------------------------------------------

    def discovery(self, ctx: Ctx) -> dict[str, Any]:
        iss = ctx.issuer
        meta = OpenIDProviderMetadata(
            issuer=iss,
            authorization_endpoint=f"{iss}/authorize",
            token_endpoint=f"{iss}/token",
            userinfo_endpoint=f"{iss}/userinfo",
            jwks_uri=f"{iss}/jwks",
            revocation_endpoint=f"{iss}/revoke",
            introspection_endpoint=f"{iss}/introspect",
            end_session_endpoint=f"{iss}/logout",
            scopes_supported=list(SCOPES_SUPPORTED),
            response_types_supported=["code"],
            response_modes_supported=["query"],
            grant_types_supported=list(GRANT_TYPES),
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=list(ALGORITHMS),
            token_endpoint_auth_methods_supported=list(AUTH_METHODS),
            revocation_endpoint_auth_methods_supported=list(AUTH_METHODS),
            introspection_endpoint_auth_methods_supported=list(_CONFIDENTIAL),
            code_challenge_methods_supported=["S256"],
            claims_supported=[
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "name",
                "preferred_username",
                "email",
            ],
            request_parameter_supported=False,
            request_uri_parameter_supported=False,
        )
        return dict(meta)

    def jwks(self, ctx: Ctx) -> dict[str, Any]:
        return self.svc.tokens.jwks(ctx.tenant_id, ctx.now)

    # -- the login page ------------------------------------------------------------------------

    def authorize(
        self,
        ctx: Ctx,
        method: str,
        path: str,
        headers: Mapping[str, str],
        pairs: list[tuple[str, str]],
        cookie: str | None,
    ) -> Response:
        """GET shows the login form for a valid authorization request; POST checks it."""

        def go(server: TenantServer) -> Response:
            if method == "GET":
                params = pairs
                login: dict[str, str] = {}
            else:
                params = [(k, v) for k, v in pairs if k in AUTHZ_PARAMS]
                login = {k: v for k, v in pairs if k not in AUTHZ_PARAMS}
            try:
                req = self.request(ctx, "GET", path, headers, params)
            except InsecureTransportError as exc:
                return _page("Sign-in refused", f"<p>{_esc(exc.description)}</p>", 400)
            if any(len(v) > self.settings.max_field_chars for _, v in pairs):
                return _page("Sign-in refused", "<p>The request is too large.</p>", 400)
            try:
                grant = server.get_consent_grant(req)
            except OAuth2Error as exc:
                return self._authorize_error(server, req, exc)
            if method == "GET":
                return self._login_form(ctx, grant, params, None, 200)
            if not self._csrf_ok(ctx, params, cookie, login.get("csrf", "")):
                msg = (
                    "The sign-in form expired or did not come from this page. Please sign in again."
                )
                return self._login_form(ctx, grant, params, msg, 400)
            if "cancel" in login:
                return server.create_authorization_response(req, grant_user=None, grant=grant)  # type: ignore[no-any-return]
            try:
                user = self.check_password(
                    ctx, login.get("username", ""), login.get("password", "")
                )
            except SlowDown as slow:
                msg = "Too many failed sign-ins from your address. Please try again later."
                page = self._login_form(ctx, grant, params, msg, 429)
                page.headers["Retry-After"] = str(slow.retry_after)
                return page
            except OAuth2Error:
                return self._login_form(ctx, grant, params, LOGIN_FAILED, 400)
            return server.create_authorization_response(req, grant_user=user, grant=grant)  # type: ignore[no-any-return]

        return self._run(ctx, go)

    def _authorize_error(
        self, server: TenantServer, req: OAuth2Request, exc: OAuth2Error
    ) -> Response:
        if exc.redirect_uri:  # client and redirect URI are valid: tell the client (4.1.2.1)
            return server.handle_error_response(req, exc)  # type: ignore[no-any-return]
        body = (
            f"<p>This sign-in request is not valid: <code>{_esc(exc.error)}</code></p>"
            f"<p>{_esc(exc.get_error_description() or '')}</p>"
        )
        return _page("Sign-in refused", body, 400)

    def _login_form(
        self,
        ctx: Ctx,
        grant: Any,
        params: list[tuple[str, str]],
        error: str | None,
        status: int,
    ) -> Response:
        nonce = secrets.token_urlsafe(24)
        issued = str(math.floor(ctx.now))
        csrf = f"{issued}.{self._csrf_mac(ctx, params, nonce, issued)}"
        hidden = "".join(
            f'<input type="hidden" name="{_esc(k)}" value="{_esc(v)}">'
            for k, v in params
            if k in AUTHZ_PARAMS
        )
        client: Client = grant.request.client
        err = f'<p class="error" role="alert">{_esc(error)}</p>' if error else ""
        body = (
            f"<h1>Sign in to {_esc(ctx.tenant)}</h1>"
            f"<p>{_esc(client.name)} asks to act for you.</p>{err}"
            f'<form method="post" action="{_esc(ctx.issuer + "/authorize")}">{hidden}'
            f'<input type="hidden" name="csrf" value="{_esc(csrf)}">'
            '<label>Username <input name="username" autocomplete="username" required '
            'maxlength="128" autofocus></label>'
            '<label>Password <input name="password" type="password" '
            'autocomplete="current-password" required maxlength="1024"></label>'
            '<button type="submit">Sign in</button> '
            '<button type="submit" name="cancel" value="1" formnovalidate>Cancel</button>'
            "</form>"
        )
        resp = _page(f"Sign in to {ctx.tenant}", body, status)
        resp.set_cookie(
            _CSRF_COOKIE,
            nonce,
            max_age=int(self.settings.form_ttl_s),
            path=urlsplit(ctx.issuer).path + "/authorize",
            secure=ctx.secure,
            httponly=True,
            samesite="strict",
        )
        return resp

    def _key(self, ctx: Ctx) -> bytes:
        if self._form_key is None:
            with ctx.write() as s:
                row = s.get(Setting, _FORM_KEY_SETTING)
                if row is None:
                    row = Setting(key=_FORM_KEY_SETTING, value=secrets.token_hex(32))
                    s.add(row)
                value = row.value
            self._form_key = bytes.fromhex(value)
        return self._form_key

    def _csrf_mac(self, ctx: Ctx, params: list[tuple[str, str]], nonce: str, issued: str) -> str:
        canonical = urlencode(sorted((k, v) for k, v in params if k in AUTHZ_PARAMS))
        msg = "\n".join((ctx.tenant_id, issued, nonce, canonical)).encode()
        return hmac.new(self._key(ctx), msg, hashlib.sha256).hexdigest()

    def _csrf_ok(
        self, ctx: Ctx, params: list[tuple[str, str]], cookie: str | None, field_value: str
    ) -> bool:
        """The hidden field is an HMAC of the authorization request and the form's cookie
        (double submit): a form posted from another site lacks the SameSite cookie."""
        issued, _, mac = field_value.partition(".")
        if not cookie or not issued.isdigit() or len(cookie) > 128:
            return False
        if not 0 <= ctx.now - int(issued) <= self.settings.form_ttl_s:
            return False
        return hmac.compare_digest(mac, self._csrf_mac(ctx, params, cookie, issued))


def _ldap_settings(ldap: Any, cfg: LdapConfig) -> Any:
    """`cellplane.identity.ldap.LdapSettings` of a tenant's LdapConfig row.

    ``attributes`` holds the user attribute names (username, email, display_name) and may name
    the group name attribute as ``group_name_attribute``; empty filters take the defaults.
    """
    attrs = {str(k): str(v) for k, v in (cfg.attributes or {}).items()}
    kwargs: dict[str, Any] = {
        "url": cfg.url,
        "bind_dn": cfg.bind_dn,
        "bind_password": cfg.bind_secret,
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


def _ascii(text: str) -> str:
    """Text safe for an OAuth error_description (printable ASCII without quote and backslash)."""
    return "".join(c for c in text[:64] if 0x20 <= ord(c) <= 0x7E and c not in '"\\')


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0}input{display:block;width:100%;padding:.4rem}"
    ".error{color:#a00}button{margin-top:.8rem;padding:.4rem 1rem}"
)


def _page(title: str, body: str, status: int) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(
        doc,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT this provider just minted (read back for its jti and exp)."""
    try:
        part = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
