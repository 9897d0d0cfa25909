"""The Python SDK for the Cellplane HTTP API (docs/api.md).

Called by the CLI (`cellplane.cli`), by integration tests and by users'
scripts. One method per route; every method returns the JSON objects of the
API as plain dicts, so the SDK never lags behind the server's fields.

Failure handling lives here so that callers need none:

- every POST carries an `Idempotency-Key` (a uuid4 unless the caller passes
  one); on a connection error or a 502/503/504 the POST is retried, bounded and
  with backoff, under the same key, so the server applies it at most once;
- GETs are retried the same way; DELETEs only when the request never left
  (connection refused), because a second DELETE is not guaranteed harmless;
- every error answer becomes a `CellplaneError` built from the RFC 9457
  problem document;
- with a `CredentialProvider` (a `cellplane login` session), an expiring
  access token is renewed before the request, and a 401 renews it once and
  sends the request again once.

Exceptions::

    CellplaneError                  an API error answer, or no answer at all
     +-- CellplaneConnectionError   the server could not be reached (after retries)
     +-- CellplaneTimeoutError      a wait ran out of time (also a TimeoutError)
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import httpx

__all__ = [
    "TERMINAL_TASK_STATES",
    "CellplaneConnectionError",
    "CellplaneError",
    "CellplaneTimeoutError",
    "Client",
    "CredentialProvider",
    "ServerSentEvent",
    "iter_sse",
]

TERMINAL_TASK_STATES = frozenset({"COMPLETED", "ERROR"})

_RETRY_STATUSES = frozenset({502, 503, 504})
# Errors after which the request may or may not have reached the server.
_AMBIGUOUS_ERRORS: tuple[type[Exception], ...] = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
)
# Errors that prove the request never reached the server.
_UNSENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
_MAX_RETRY_AFTER = 10.0
_UPLOAD_CHUNK = 256 * 1024

JSONDict = dict[str, Any]


class CellplaneError(Exception):
    """An error answer from the API (RFC 9457 problem), or a failure to get one."""

    def __init__(
        self,
        title: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        type: str | None = None,
        errors: list[JSONDict] | None = None,
    ) -> None:
        self.title = title
        self.detail = detail
        self.status = status
        self.type = type
        self.errors: list[JSONDict] = errors or []
        super().__init__(self._message())

    def _message(self) -> str:
        head = self.title if self.status is None else f"{self.title} ({self.status})"
        detail = self.detail
        if not detail and self.errors:
            detail = "; ".join(
                f"{e.get('field', '?')}: {e.get('message', '')}" for e in self.errors
            )
        text = f"{head}: {detail}" if detail else head
        # One line, whatever the server put in its detail.
        return " ".join(text.split())

    def __str__(self) -> str:
        return self._message()

    @classmethod
    def from_response(cls, response: httpx.Response) -> CellplaneError:
        """Build the error from an error answer; the body must already be read."""
        status = response.status_code
        reason = response.reason_phrase or "HTTP error"
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            raw_errors = body.get("errors")
            errors = [e for e in raw_errors if isinstance(e, dict)] if raw_errors else []
            return cls(
                str(body.get("title") or reason),
                None if body.get("detail") is None else str(body["detail"]),
                status=status,
                type=None if body.get("type") is None else str(body["type"]),
                errors=errors,
            )
        text = response.text.strip()
        return cls(reason, text[:300] or None, status=status)


class CellplaneConnectionError(CellplaneError):
    """The server could not be reached, even after the retries."""


class CellplaneTimeoutError(CellplaneError, TimeoutError):
    """A wait (for a task) ran past its deadline; the operation itself goes on."""


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched SSE event."""

    event: str
    data: str
    id: str | None = None


def iter_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Parse a text/event-stream given line by line (the WHATWG rules we need).

    Comments (`:` lines, used as keep-alives) are skipped; several `data:`
    lines join with newlines; an event without data is not dispatched.
    """
    event = ""
    data: list[str] = []
    last_id: str | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            last_id = value
    # A stream may end without the final blank line; the event is still whole.
    if data:
        yield ServerSentEvent(event or "message", "\n".join(data), last_id)


def _label_params(labels: Mapping[str, str] | None) -> list[tuple[str, str]]:
    return [("label", f"{k}={v}") for k, v in (labels or {}).items()]


def _drop_none(body: Mapping[str, Any]) -> JSONDict:
    return {k: v for k, v in body.items() if v is not None}


def _decode(response: httpx.Response, method: str, path: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise CellplaneError(
            "Unexpected answer",
            f"{method} {path}: the body is not JSON",
            status=response.status_code,
        ) from exc


class CredentialProvider(Protocol):
    """Where a client gets its bearer token when it is not a fixed one (an OAuth login).

    `access_token` is called before every request: it returns the token to send, renewed
    first when it is about to expire. `refresh` is called once after a 401: it gets a new
    token (never sending the rejected one again) or returns None to give up; it raises
    CellplaneError when the login cannot be renewed. Both get the client's own httpx client,
    so token requests share its TLS verification and transport.
    `cellplane.cli.config.SessionCredentials` is the implementation for `cellplane login`.
    """

    def access_token(self, http: httpx.Client) -> str | None: ...

    def refresh(self, http: httpx.Client, rejected: str | None) -> str | None: ...


class Client:
    """A synchronous client of one Cellplane server.

    >>> with Client("https://cp.example:8443", token) as cp:
    ...     task = cp.create_cell("default", "web", "busybox", command=["sleep", "60"])
    ...     cp.wait_task(task["id"])
    """

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
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = max(0.0, backoff)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            # A path is a CA bundle (the deployment's root): verify the server against it only.
            verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_config(
        cls,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> Client:
        """Build a client from the CLI configuration (file plus environment)."""
        # Imported here: the SDK must not load CLI modules unless this is used.
        from cellplane.cli import config as cli_config

        try:
            conf = cli_config.load_config()
        except cli_config.ConfigError as exc:
            raise CellplaneError("Bad configuration", str(exc)) from exc
        if not conf.server:
            raise CellplaneError(
                "Not configured",
                f"no server in {conf.path}; run `cellplane up` or set CELLPLANE_SERVER",
            )
        verify: bool | str | ssl.SSLContext = conf.ca_cert or True
        # A login session (`cellplane login`) renews its own token; else the fixed token.
        credentials = cli_config.credentials_of(conf)
        return cls(
            conf.server,
            None if credentials is not None else conf.token,
            verify=verify,
            timeout=timeout,
            transport=transport,
            credentials=credentials,
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
        retry_errors = _UNSENT_ERRORS if method == "DELETE" else _AMBIGUOUS_ERRORS
        retry_statuses = _RETRY_STATUSES if method in ("GET", "POST") else frozenset()
        attempt = 0
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
            except retry_errors as exc:
                if attempt >= self._retries:
                    raise CellplaneConnectionError(
                        "Connection failed", f"{method} {request.url}: {exc or type(exc).__name__}"
                    ) from exc
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
            if response.status_code in retry_statuses and attempt < self._retries:
                response.close()
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

    # -- identity and health ---------------------------------------------

    def health(self) -> JSONDict:
        """GET /healthz."""
        return self._json("GET", "/healthz")

    def whoami(self) -> JSONDict:
        """GET /v1/whoami: `{subject, tenant, roles}`."""
        return self._json("GET", "/v1/whoami")

    # -- hosts --------------------------------------------------------------

    def list_hosts(
        self,
        *,
        labels: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JSONDict:
        """One page of hosts: `{items, next_cursor}`."""
        return self._page("/v1/hosts", _label_params(labels), limit, cursor)

    def iter_hosts(self, *, labels: Mapping[str, str] | None = None) -> Iterator[JSONDict]:
        """Every host, following `next_cursor`."""
        return self._iter("/v1/hosts", _label_params(labels))

    def get_host(self, host_id: str) -> JSONDict:
        return self._json("GET", f"/v1/hosts/{host_id}")

    def set_maintenance(
        self, host_id: str, enabled: bool, *, idempotency_key: str | None = None
    ) -> JSONDict:
        """Put a host into (or out of) maintenance; returns the Host."""
        return self._json(
            "POST",
            f"/v1/hosts/{host_id}/maintenance",
            json_body={"enabled": enabled},
            idempotency_key=idempotency_key,
        )

    # -- flavors ------------------------------------------------------------

    def list_flavors(self, *, limit: int | None = None, cursor: str | None = None) -> JSONDict:
        return self._page("/v1/flavors", (), limit, cursor)

    def iter_flavors(self) -> Iterator[JSONDict]:
        return self._iter("/v1/flavors")

    def get_flavor(self, name: str) -> JSONDict:
        return self._json("GET", f"/v1/flavors/{name}")

    def create_flavor(
        self,
        name: str,
        cpu: float,
        memory_mb: int,
        disk_gb: int,
        *,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        body = {"name": name, "cpu": cpu, "memory_mb": memory_mb, "disk_gb": disk_gb}
        return self._json("POST", "/v1/flavors", json_body=body, idempotency_key=idempotency_key)

    def delete_flavor(self, name: str) -> None:
        self._send("DELETE", f"/v1/flavors/{name}")

    # -- images -------------------------------------------------------------

    def list_images(self, *, limit: int | None = None, cursor: str | None = None) -> JSONDict:
        return self._page("/v1/images", (), limit, cursor)

    def iter_images(self) -> Iterator[JSONDict]:
        return self._iter("/v1/images")

    def get_image(self, id_or_name: str) -> JSONDict:
        return self._json("GET", f"/v1/images/{id_or_name}")

    def upload_image(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int], None] | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Upload a docker-archive/OCI tarball, streamed from disk; returns the Image.

        `progress` is called with the byte count of each chunk sent (again from
        zero if a retry re-sends the file).
        """
        file_path = Path(path)
        size = file_path.stat().st_size

        def chunks() -> Iterator[bytes]:
            with file_path.open("rb") as handle:
                while chunk := handle.read(_UPLOAD_CHUNK):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk

        return self._json(
            "POST",
            "/v1/images",
            params=[("name", name)],
            content=chunks,
            # An explicit length: the server can refuse an oversized upload up front.
            headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
            idempotency_key=idempotency_key,
            timeout=httpx.Timeout(self._timeout, write=max(self._timeout, 300.0)),
        )

    def delete_image(self, id_or_name: str) -> None:
        self._send("DELETE", f"/v1/images/{id_or_name}")

    # -- projects -----------------------------------------------------------

    def list_projects(self, *, limit: int | None = None, cursor: str | None = None) -> JSONDict:
        return self._page("/v1/projects", (), limit, cursor)

    def iter_projects(self) -> Iterator[JSONDict]:
        return self._iter("/v1/projects")

    def create_project(self, name: str, *, idempotency_key: str | None = None) -> JSONDict:
        return self._json(
            "POST", "/v1/projects", json_body={"name": name}, idempotency_key=idempotency_key
        )

    # -- cells --------------------------------------------------------------

    def create_cell(
        self,
        project: str,
        name: str,
        image: str,
        *,
        flavor: str | None = None,
        cpu: float | None = None,
        memory_mb: int | None = None,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        ports: Sequence[Mapping[str, Any]] | None = None,
        volumes: Sequence[Mapping[str, Any]] | None = None,
        restart: Mapping[str, Any] | None = None,
        start: bool = True,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Ask for a cell; returns the CREATE_CELL task (202). Unset fields use server defaults."""
        body = _drop_none(
            {
                "name": name,
                "image": image,
                "flavor": flavor,
                "cpu": cpu,
                "memory_mb": memory_mb,
                "command": None if command is None else list(command),
                "env": None if env is None else dict(env),
                "labels": None if labels is None else dict(labels),
                "ports": None if ports is None else [dict(p) for p in ports],
                "volumes": None if volumes is None else [dict(v) for v in volumes],
                "restart": None if restart is None else dict(restart),
                "start": start,
            }
        )
        return self._json(
            "POST",
            f"/v1/projects/{project}/cells",
            json_body=body,
            idempotency_key=idempotency_key,
        )

    @staticmethod
    def _cell_query(
        labels: Mapping[str, str] | None, state: str | None, name: str | None
    ) -> list[tuple[str, str]]:
        query = _label_params(labels)
        if state:
            query.append(("state", state))
        if name:
            query.append(("name", name))
        return query

    def list_cells(
        self,
        project: str,
        *,
        labels: Mapping[str, str] | None = None,
        state: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JSONDict:
        """One page of a project's cells: `{items, next_cursor}`."""
        query = self._cell_query(labels, state, name)
        return self._page(f"/v1/projects/{project}/cells", query, limit, cursor)

    def iter_cells(
        self,
        project: str,
        *,
        labels: Mapping[str, str] | None = None,
        state: str | None = None,
        name: str | None = None,
    ) -> Iterator[JSONDict]:
        """Every matching cell of a project, following `next_cursor`."""
        query = self._cell_query(labels, state, name)
        return self._iter(f"/v1/projects/{project}/cells", query)

    def find_cell(self, project: str, name: str) -> JSONDict | None:
        """The cell called `name` in `project`, or None."""
        # Compare names here too: exactness must not depend on how the server filters.
        return next((c for c in self.iter_cells(project, name=name) if c.get("name") == name), None)

    def get_cell(self, cell_id: str) -> JSONDict:
        return self._json("GET", f"/v1/cells/{cell_id}")

    def start_cell(self, cell_id: str, *, idempotency_key: str | None = None) -> JSONDict:
        """Returns the START task."""
        return self._json("POST", f"/v1/cells/{cell_id}/start", idempotency_key=idempotency_key)

    def stop_cell(
        self,
        cell_id: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Returns the STOP task; `timeout` is the grace period before SIGKILL, in seconds."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/stop",
            json_body=_drop_none({"timeout": timeout}),
            idempotency_key=idempotency_key,
        )

    def restart_cell(
        self,
        cell_id: str,
        *,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        """Returns the restart task."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/restart",
            json_body=_drop_none({"timeout": timeout}),
            idempotency_key=idempotency_key,
        )

    def delete_cell(self, cell_id: str) -> JSONDict:
        """Returns the DELETE task."""
        return self._json("DELETE", f"/v1/cells/{cell_id}")

    def cell_logs(
        self, cell_id: str, *, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        """Yield log lines (without their newline); with `follow`, until the stream ends."""
        query: list[tuple[str, str]] = []
        if tail is not None:
            query.append(("tail", str(tail)))
        if follow:
            query.append(("follow", "true"))
        # A followed log may stay silent for hours; that is not a failure.
        timeout = httpx.Timeout(self._timeout, read=None) if follow else None
        headers = {"Accept": "text/plain"}
        with self._stream(
            f"/v1/cells/{cell_id}/logs", params=query, headers=headers, timeout=timeout
        ) as response:
            try:
                yield from response.iter_lines()
            except httpx.HTTPError as exc:
                raise CellplaneConnectionError(
                    "Connection lost", f"reading logs of {cell_id}: {exc or type(exc).__name__}"
                ) from exc

    def exec_cell(
        self, cell_id: str, command: Sequence[str], *, idempotency_key: str | None = None
    ) -> JSONDict:
        """Run a command in a running cell: `{exit_code, output}`."""
        return self._json(
            "POST",
            f"/v1/cells/{cell_id}/exec",
            json_body={"command": list(command)},
            idempotency_key=idempotency_key,
        )

    # -- volumes ------------------------------------------------------------

    def create_volume(
        self,
        project: str,
        name: str,
        *,
        size_gb: int | None = None,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        return self._json(
            "POST",
            f"/v1/projects/{project}/volumes",
            json_body=_drop_none({"name": name, "size_gb": size_gb}),
            idempotency_key=idempotency_key,
        )

    def list_volumes(
        self,
        project: str,
        *,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JSONDict:
        query = [("name", name)] if name else []
        return self._page(f"/v1/projects/{project}/volumes", query, limit, cursor)

    def iter_volumes(self, project: str, *, name: str | None = None) -> Iterator[JSONDict]:
        query = [("name", name)] if name else []
        return self._iter(f"/v1/projects/{project}/volumes", query)

    def find_volume(self, project: str, name: str) -> JSONDict | None:
        """The volume called `name` in `project`, or None."""
        return next(
            (v for v in self.iter_volumes(project, name=name) if v.get("name") == name), None
        )

    def get_volume(self, volume_id: str) -> JSONDict:
        return self._json("GET", f"/v1/volumes/{volume_id}")

    def delete_volume(self, volume_id: str) -> None:
        self._send("DELETE", f"/v1/volumes/{volume_id}")

    # -- tasks --------------------------------------------------------------

    def get_task(self, task_id: str) -> JSONDict:
        return self._json("GET", f"/v1/tasks/{task_id}")

    def watch_task(self, task_id: str, *, timeout: float | None = None) -> Iterator[JSONDict]:
        """Yield the task each time it changes, ending after a terminal state.

        Reads the SSE stream; if the stream breaks or ends early the task is
        fetched and the stream reopened, so a restarting server costs nothing
        but a reconnect. Raises CellplaneTimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: JSONDict | None = None
        failures = 0

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise CellplaneTimeoutError(
                    "Timed out", f"task {task_id} not finished after {timeout:g} s"
                )
            return left

        while True:
            left = remaining()
            read = self._timeout if left is None else min(self._timeout, left)
            try:
                with self._stream(
                    f"/v1/tasks/{task_id}/events",
                    headers={"Accept": "text/event-stream"},
                    timeout=httpx.Timeout(self._timeout, read=read),
                ) as response:

                    def lines() -> Iterator[str]:
                        # Keep-alive comments reset the read timeout: check the deadline per line.
                        for line in response.iter_lines():
                            remaining()
                            yield line

                    for event in iter_sse(lines()):
                        if event.event not in ("task", "message"):
                            continue
                        try:
                            task = json.loads(event.data)
                        except ValueError:
                            continue  # The fetch after the stream still reports the truth.
                        if not isinstance(task, dict):
                            continue
                        failures = 0
                        if task != last:
                            last = task
                            yield task
                        if task.get("state") in TERMINAL_TASK_STATES:
                            return
                        remaining()
            except httpx.ReadTimeout:
                pass  # Quiet stream: poll below, then listen again.
            except _AMBIGUOUS_ERRORS as exc:
                failures += 1
                if failures > self._retries:
                    raise CellplaneConnectionError(
                        "Connection failed", f"watching task {task_id}: {exc}"
                    ) from exc
            task = self.get_task(task_id)
            if task != last:
                last = task
                yield task
            if task.get("state") in TERMINAL_TASK_STATES:
                return
            left = remaining()
            pause = self._delay(min(failures, 4), None)
            time.sleep(pause if left is None else min(pause, left))

    def wait_task(self, task_id: str, timeout: float | None = 300.0) -> JSONDict:
        """Block until the task is COMPLETED or ERROR and return it (it does not raise on ERROR)."""
        last: JSONDict | None = None
        for task in self.watch_task(task_id, timeout=timeout):
            last = task
        if last is None:  # pragma: no cover - watch_task always yields before returning
            last = self.get_task(task_id)
        return last
