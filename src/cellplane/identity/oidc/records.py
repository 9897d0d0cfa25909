"""What authlib calls the application objects: the request context (`Ctx`), users, clients, token and
code records, and the request/payload types.

Built by `core.py` (context, clients) and the token store (`store.py`); read by authlib through
the adapters (`adapters.py`). Free of HTTP frameworks: the routes pass plain pairs and headers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import (
    ClientMixin,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    TokenMixin,
    list_to_scope,
    scope_to_list,
)
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from cellplane.identity.oidc.settings import (
    _CONFIDENTIAL,
    _MAX_URI,
    _ROLES_SEP,
    BUILTIN_CLIENT_ID,
    PORTAL_CLIENT_ID,
    PORTAL_REDIRECT_PATHS,
    SCOPES_SUPPORTED,
)
from cellplane.identity.passwords import (
    verify_secret,
)
from cellplane.state.identity_models import (
    RefreshToken,
    User,
)

if TYPE_CHECKING:
    from cellplane.identity.oidc.provider import OidcProvider

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

    @contextmanager
    def write_rows(self) -> Iterator[Connection]:
        """`write` on a Core connection (`Database.connection`), for Core statements only."""
        self.release()
        with self.provider.svc.db.connection() as conn:
            yield conn

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


def portal_client(issuer: str, tenant: str) -> Client:
    """The portal's client in the tenant of `issuer`: public (PKCE), authorization code and
    refresh only, redirect (and post-logout redirect) URIs the portal's paths on the issuer's
    base URL."""
    base = issuer[: -len(f"/identity/{tenant}")]
    return Client(
        PORTAL_CLIENT_ID,
        "Cellplane portal",
        None,
        [base + path for path in PORTAL_REDIRECT_PATHS],
        ("authorization_code", "refresh_token"),
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


def _ascii(text: str) -> str:
    """Text safe for an OAuth error_description (printable ASCII without quote and backslash)."""
    return "".join(c for c in text[:64] if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
