"""The SDK's transport: one `httpx.Client`, the retry policy, problem documents, pagination.

`BaseClient` is the base of every noun module of `cellplane.client` (`cells.py`, `users.py`,
...); `cellplane.client.Client` combines them. Nothing outside the package calls the
underscore methods here: the noun modules turn each route into a public method.

Failure handling lives here so that callers need none:

- every POST carries an `Idempotency-Key` (a uuid4 unless the caller passes
  one); on a connection error or a 502/503/504 the POST is retried, bounded and
  with backoff, under the same key, so the server applies it at most once;
- GETs are retried the same way; DELETEs only when the request never left
  (connection refused), because a second DELETE is not guaranteed harmless;
- with several server URLs (replicas, comma-separated), each such retry goes to
  the next one, and the budget grows by one per further replica;
- every error answer becomes a `CellplaneError` built from the RFC 9457
  problem document;
- with a `CredentialProvider` (a `cellplane login` session), an expiring
  access token is renewed before the request, and a 401 renews it once and
  sends the request again once.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from cellplane.client import config
from cellplane.client.credentials import CredentialProvider, credentials_of
from cellplane.client.errors import CellplaneConnectionError, CellplaneError
from cellplane.server_urls import ServerRotation, parse_servers

__all__ = [
    "AMBIGUOUS_ERRORS",
    "BaseClient",
    "JSONDict",
    "drop_none",
    "label_params",
    "seg",
    "speaks_tls",
]

JSONDict = dict[str, Any]

_RETRY_STATUSES = frozenset({502, 503, 504})
# A 503 means nothing was done (the server's own answer says so; a proxy's means no backend
# took the request): any method is retried on it. A 502 or 504 may come after the upstream
# acted: only GETs and keyed POSTs are retried on those.
_UNDONE_STATUSES = frozenset({503})
# Errors after which the request may or may not have reached the server.
AMBIGUOUS_ERRORS: tuple[type[Exception], ...] = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
)
# Errors that prove the request never reached the server.
_UNSENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
_MAX_RETRY_AFTER = 10.0


def label_params(labels: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """`?label=k=v` query pairs for a label filter."""
    return [("label", f"{k}={v}") for k, v in (labels or {}).items()]


def seg(value: str) -> str:
    """A caller-given name or id as one path segment (`/` and the like escaped)."""
    return quote(value, safe="")


def drop_none(body: Mapping[str, Any]) -> JSONDict:
    """A request body without its unset (None) fields: the server applies its defaults."""
    return {k: v for k, v in body.items() if v is not None}


def speaks_tls(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the server at host:port completes a TLS handshake (its certificate unchecked:
    this only tells a plain-HTTP URL pointed at an HTTPS server apart from a dead server)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def _wrong_scheme(url: httpx.URL) -> CellplaneConnectionError | None:
    """The error for an http:// URL whose server speaks HTTPS (it drops a plain request without
    an answer, which httpx reports as "Server disconnected"); None when that is not the cause."""
    if url.scheme != "http" or not url.host:
        return None
    port = url.port or 80
    if not speaks_tls(url.host, port):
        return None
    plain = f"http://{url.netloc.decode('ascii')}"
    return CellplaneConnectionError(
        "Wrong scheme",
        f"the server at {plain} speaks HTTPS; use https://{url.netloc.decode('ascii')} "
        "(in CELLPLANE_SERVER, --server or the configuration file)",
    )


def _decode(response: httpx.Response, method: str, path: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise CellplaneError(
            "Unexpected answer",
            f"{method} {path}: the body is not JSON",
            status=response.status_code,
        ) from exc


class BaseClient:
    """The transport every noun of the SDK shares (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        verify: bool | str | ssl.SSLContext = True,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        retries: int = 3,
        backoff: float = 0.25,
        credentials: CredentialProvider | None = None,
    ) -> None:
        """`token` is a fixed bearer token; `credentials`, instead, renews it (see
        CredentialProvider): before a request that would carry an expiring token, and once
        after a 401, after which the request is sent again once."""
        headers = {"Accept": "application/json", "User-Agent": "cellplane-sdk"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._credentials = credentials
        # A test's transport reaches no real server: nothing to probe for a wrong scheme.
        self._probe_scheme = transport is None
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = max(0.0, backoff)
        # A path is a CA bundle (the deployment's root): verify the server against it only.
        self._verify = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        # Several replicas ("https://a:7400,https://b:7400"): a connection error moves on.
        try:
            self._servers = ServerRotation(parse_servers(base_url))
        except ValueError as exc:
            raise CellplaneError("Bad configuration", str(exc)) from None
        self._http = httpx.Client(
            base_url=self._servers.current,
            headers=headers,
            verify=self._verify,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_config(
        cls,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> Self:
        """Build a client from the configuration file plus environment (`client.config`)."""
        try:
            conf = config.load_config()
        except config.ConfigError as exc:
            raise CellplaneError("Bad configuration", str(exc)) from exc
        if not conf.server:
            raise CellplaneError(
                "Not configured",
                f"no server in {conf.path}; run `cellplane up` or set CELLPLANE_SERVER",
            )
        verify: bool | str | ssl.SSLContext = conf.ca_cert or True
        # A login session (`cellplane login`) renews its own token; else the fixed token.
        provider = credentials_of(conf)
        return cls(
            conf.server,
            None if provider is not None else conf.token,
            verify=verify,
            timeout=timeout,
            transport=transport,
            credentials=provider,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport --------------------------------------------------------

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            with contextlib.suppress(ValueError):
                return min(max(float(retry_after), 0.0), _MAX_RETRY_AFTER)
        return float(self._backoff * (2**attempt))

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        json_body: Any = None,
        content: Callable[[], Iterator[bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one request with the retry policy; raise CellplaneError on an error answer."""
        all_headers = dict(headers or {})
        if method == "POST":
            all_headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        retry_errors = _UNSENT_ERRORS if method == "DELETE" else AMBIGUOUS_ERRORS
        retry_statuses = _RETRY_STATUSES if method in ("GET", "POST") else _UNDONE_STATUSES
        attempt = 0
        # One more try per further replica: a dead server costs a move, not the request.
        budget = self._retries + len(self._servers) - 1
        renewed = False  # the credentials are renewed after a 401 once per request
        bearer: str | None = None
        while True:
            if self._credentials is not None:
                bearer = self._credentials.access_token(self._http)
                if bearer:
                    all_headers["Authorization"] = f"Bearer {bearer}"
            body_stream = content() if content is not None else None
            request = self._http.build_request(
                method,
                path,
                params=list(params) if params else None,
                json=json_body,
                content=body_stream,
                headers=all_headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = self._http.send(request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                wrong = _wrong_scheme(request.url) if self._probe_scheme else None
                if wrong is not None:
                    raise wrong from exc
                if not isinstance(exc, retry_errors) or attempt >= budget:
                    raise CellplaneConnectionError(
                        "Connection failed", f"{method} {request.url}: {exc or type(exc).__name__}"
                    ) from exc
                self._fail_over()
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            except retry_errors as exc:
                if attempt >= budget:
                    raise CellplaneConnectionError(
                        "Connection failed", f"{method} {request.url}: {exc or type(exc).__name__}"
                    ) from exc
                self._fail_over()
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise CellplaneConnectionError(
                    "Connection failed", f"{method} {request.url}: {exc or type(exc).__name__}"
                ) from exc
            finally:
                if body_stream is not None and hasattr(body_stream, "close"):
                    body_stream.close()
            if response.status_code in retry_statuses and attempt < budget:
                response.close()
                self._fail_over()
                time.sleep(self._delay(attempt, response))
                attempt += 1
                continue
            if response.status_code >= 400:
                try:
                    response.read()
                finally:
                    response.close()
                if response.status_code == 401 and self._credentials is not None and not renewed:
                    renewed = True
                    if self._credentials.refresh(self._http, bearer):
                        continue
                raise CellplaneError.from_response(response)
            if not stream:
                try:
                    response.read()
                finally:
                    response.close()
            return response

    def _fail_over(self) -> None:
        """The current server failed: send the next request to the next replica (if any)."""
        if len(self._servers) > 1:
            self._http.base_url = httpx.URL(self._servers.failed(str(self._http.base_url)))

    @property
    def server_url(self) -> str:
        """The server (replica) requests go to now."""
        return self._servers.current

    def _json(self, method: str, path: str, **kwargs: Any) -> JSONDict:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return {}
        data = _decode(response, method, path)
        if not isinstance(data, dict):
            raise CellplaneError(
                "Unexpected answer", f"{method} {path}: expected a JSON object", status=200
            )
        return data

    def _page(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        limit: int | None,
        cursor: str | None,
    ) -> JSONDict:
        query = list(params)
        if limit is not None:
            query.append(("limit", str(limit)))
        if cursor:
            query.append(("cursor", cursor))
        response = self._send("GET", path, params=query)
        data = _decode(response, "GET", path)
        # Tolerate a bare array: it is a complete, unpaginated list.
        if isinstance(data, list):
            return {"items": data, "next_cursor": None}
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise CellplaneError("Unexpected answer", f"GET {path}: expected a list", status=200)
        return data

    def _iter(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Iterator[JSONDict]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self._page(path, params, None, cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
            # A server bug handing back an old cursor must not become an endless loop.
            if cursor in seen:
                raise CellplaneError("Unexpected answer", f"GET {path}: cursor {cursor!r} repeats")
            seen.add(cursor)

    @contextlib.contextmanager
    def _stream(
        self,
        path: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> Iterator[httpx.Response]:
        response = self._send(
            "GET", path, params=params, headers=headers, stream=True, timeout=timeout
        )
        try:
            yield response
        finally:
            response.close()

    # -- WebSocket routes -----------------------------------------------------------

    def _ws_target(self, path: str) -> tuple[str, dict[str, str], ssl.SSLContext | None]:
        """For a WebSocket route: its ws:// or wss:// URL, the headers with the current
        credentials, and the TLS context (None for plain ws)."""
        base = self._http.base_url
        scheme = {"http": "ws", "https": "wss"}.get(base.scheme)
        if scheme is None:
            raise CellplaneError("Bad configuration", f"server URL {base} is not http(s)")
        url = scheme + str(base).rstrip("/")[len(base.scheme) :] + path
        headers = {"User-Agent": "cellplane-sdk"}
        auth = self._http.headers.get("Authorization")
        if self._credentials is not None:
            bearer = self._credentials.access_token(self._http)
            auth = f"Bearer {bearer}" if bearer else None
        if auth:
            headers["Authorization"] = auth
        if scheme == "ws":
            return url, headers, None
        if isinstance(self._verify, ssl.SSLContext):
            return url, headers, self._verify
        context = ssl.create_default_context()
        if self._verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return url, headers, context

    def _renew_after_401(self, rejected_header: str | None) -> bool:
        """After a 401 on a route the transport did not send: renew the login session once."""
        if self._credentials is None:
            return False
        rejected = (rejected_header or "").removeprefix("Bearer ") or None
        return self._credentials.refresh(self._http, rejected) is not None

    # -- health -----------------------------------------------------------------

    def health(self) -> JSONDict:
        """GET /healthz."""
        return self._json("GET", "/healthz")

    def leader(self) -> JSONDict:
        """GET /v1/system/leader: which server replica runs the controllers, and its epoch."""
        return self._json("GET", "/v1/system/leader")
