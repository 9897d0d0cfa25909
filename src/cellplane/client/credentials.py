"""Credential providers of the SDK: how a `Client` gets and renews its bearer token.

`CredentialProvider` is the seam (`Client(credentials=...)`); `SessionCredentials` is the
implementation for a stored `cellplane login` session (`cellplane.client.config`): it renews
the access token at the tenant's token endpoint, under the configuration's lock file, and
writes the rotated refresh token before the new access token is used. `token_request` is the
one place a token or revocation endpoint is called; `cellplane login`/`logout` use it too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from cellplane.client.config import (
    REFRESH_MARGIN_S,
    ClientConfig,
    ConfigError,
    LoginSession,
    read_session,
    session_lock,
    store_session,
)

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CredentialProvider",
    "OAuthError",
    "SessionCredentials",
    "credentials_of",
    "session_from_token_answer",
    "token_request",
]

#: When a token answer has no `expires_in` (RFC 6749 makes it optional): assume this lifetime.
_DEFAULT_EXPIRES_IN_S = 300.0


class CredentialProvider(Protocol):
    """Where a client gets its bearer token when it is not a fixed one (an OAuth login).

    `access_token` is called before every request: it returns the token to send, renewed
    first when it is about to expire. `refresh` is called once after a 401: it gets a new
    token (never sending the rejected one again) or returns None to give up; it raises
    CellplaneError when the login cannot be renewed. Both get the client's own httpx client,
    so token requests share its TLS verification and transport.
    `SessionCredentials` is the implementation for `cellplane login`.
    """

    def access_token(self, http: httpx.Client) -> str | None: ...

    def refresh(self, http: httpx.Client, rejected: str | None) -> str | None: ...


class OAuthError(Exception):
    """An error answer of the token or revocation endpoint (RFC 6749 section 5.2)."""

    def __init__(
        self, error: str, description: str | None = None, status: int | None = None
    ) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}" if description else error)


def token_request(
    http: httpx.Client,
    endpoint: str,
    form: Mapping[str, str],
    *,
    basic: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """POST a form to a token endpoint, once (never retried: a refresh token is single-use).

    `basic` is (client id, secret) for client_secret_basic. Returns the JSON answer; raises
    OAuthError for an error answer and `httpx.HTTPError` when there is no answer.
    """
    headers = {"Accept": "application/json", "Cache-Control": "no-store"}
    if basic is not None:
        import base64

        pair = f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    response = http.post(endpoint, data=dict(form), headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            description = body.get("error_description")
            raise OAuthError(
                body["error"],
                description if isinstance(description, str) else None,
                response.status_code,
            )
        if isinstance(body, dict) and isinstance(body.get("title"), str):  # an API problem
            detail = body.get("detail")
            raise OAuthError(
                "server_error",
                f"{body['title']}: {detail}" if isinstance(detail, str) else body["title"],
                response.status_code,
            )
        text = response.text.strip()[:200] or response.reason_phrase
        raise OAuthError(
            "server_error", f"HTTP {response.status_code}: {text}", response.status_code
        )
    return body


def session_from_token_answer(
    base: LoginSession, answer: Mapping[str, Any], now: float | None = None
) -> LoginSession:
    """`base` with the access token (and rotated refresh token) of a token answer."""
    now = time.time() if now is None else now
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError("server_error", "the token answer has no access_token")
    expires_in = answer.get("expires_in")
    lifetime = (
        float(expires_in)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
        else _DEFAULT_EXPIRES_IN_S
    )
    refresh = answer.get("refresh_token")
    return replace(
        base,
        access_token=access,
        expires_at=now + lifetime,
        # A server that does not rotate answers no refresh token: the old one stays good.
        refresh_token=refresh if isinstance(refresh, str) and refresh else base.refresh_token,
    )


def _grant(http: httpx.Client, session: LoginSession) -> dict[str, Any]:
    """One token request renewing `session`: refresh_token, or client_credentials."""
    if session.kind == "service":
        if not session.client_secret:
            raise OAuthError("invalid_client", "no client secret is stored for this login")
        return token_request(
            http,
            session.token_endpoint,
            {"grant_type": "client_credentials"},
            basic=(session.client_id, session.client_secret),
        )
    if not session.refresh_token:
        raise OAuthError("invalid_grant", "the session has no refresh token")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": session.refresh_token,
        "client_id": session.client_id,
    }
    return token_request(http, session.token_endpoint, form)


class SessionCredentials:
    """The SDK's credential provider for a stored login session (`Client(credentials=...)`).

    Before a request it hands out the session's access token, renewed first when it expires
    within `margin_s`; after a 401 it renews once. A renewal holds `session_lock`, re-reads
    the file (another process may have renewed: then its tokens are adopted, no request is
    made), sends one token request and writes the answer to the file before the new access
    token is used. A refused refresh ends the session (its tokens are cleared from the file).
    """

    def __init__(
        self,
        session: LoginSession,
        path: Path,
        *,
        margin_s: float = REFRESH_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._path = path
        self._margin = margin_s
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def session(self) -> LoginSession:
        return self._session

    def access_token(self, http: httpx.Client) -> str | None:
        with self._lock:
            if self._session.expires_within(self._margin, self._clock()):
                self._renew(http, rejected=None)
            return self._session.access_token

    def refresh(self, http: httpx.Client, rejected: str | None) -> str | None:
        with self._lock:
            self._renew(http, rejected=rejected)
            return self._session.access_token

    def _renew(self, http: httpx.Client, rejected: str | None) -> None:
        import httpx

        from cellplane.client.errors import CellplaneConnectionError, CellplaneError

        relogin = (
            f"run `cellplane login --server {self._session.server} --tenant {self._session.tenant}`"
        )
        with session_lock(self._path):
            try:
                stored = read_session(self._path)
            except ConfigError as exc:
                raise CellplaneError("Bad configuration", str(exc)) from exc
            if stored is None or not stored.same_login(self._session):
                raise CellplaneError(
                    "Not logged in", f"the session ended (logout or another login); {relogin}"
                )
            now = self._clock()
            if stored.access_token not in (
                "",
                self._session.access_token,
                rejected,
            ) and not stored.expires_within(self._margin, now):
                self._session = stored  # renewed by another process meanwhile
                return
            if not stored.renewable:
                raise CellplaneError("Session expired", relogin, status=401)
            try:
                answer = _grant(http, stored)
                renewed = session_from_token_answer(stored, answer, now)
            except httpx.HTTPError as exc:
                # Not retried: the server may have rotated the refresh token already.
                raise CellplaneConnectionError(
                    "Connection failed",
                    f"renewing the session at {stored.token_endpoint}: {exc or type(exc).__name__}",
                ) from exc
            except OAuthError as exc:
                if exc.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                    # The refresh token (or secret) is no good any more: forget the tokens.
                    store_session(
                        self._path,
                        replace(
                            stored,
                            access_token="",
                            expires_at=0.0,
                            refresh_token=None,
                            client_secret=None,
                        ),
                    )
                    raise CellplaneError(
                        "Session expired",
                        f"{exc.description or exc.error}; {relogin}",
                        status=401,
                    ) from exc
                raise CellplaneError("Session renewal failed", str(exc), status=exc.status) from exc
            # Written before use: the old refresh token is spent, the new one must not be lost.
            store_session(self._path, renewed)
            self._session = renewed


def credentials_of(conf: ClientConfig) -> SessionCredentials | None:
    """The credential provider of the configuration's session, or None (a fixed token)."""
    if conf.session is None:
        return None
    return SessionCredentials(conf.session, conf.path)
