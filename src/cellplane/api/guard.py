"""The request guard: what every request must be before any route sees it, and the headers every
answer carries. Installed by `api/app.py` as the outermost middleware (pure ASGI, no buffering of
answers).

Before routing:
* a body over the server's limit is refused with 413, from its Content-Length before a byte is
  read, or as soon as a chunked body passes the limit (routes that stream large uploads, such as
  image import, are exempt and enforce their own limit);
* a JSON body is decoded once here and refused with 422 naming the field when any string in it
  (key or value) holds a NUL or a lone UTF-16 surrogate, or with 400 when it nests deeper than
  `validation.MAX_JSON_DEPTH`; the same bytes then go on to the route;
* a NUL in the path or the query string is refused with 400;
* request headers larger than `max_header_bytes` together are refused with 431;
* a body that is not JSON (its Content-Type names another media type) sent to a JSON route (the
  `json_only` paths: the API under /v1/, the image upload aside) is refused with 415 before it is
  read; a JSON body that is not UTF-8 is refused with 400 naming the first bad byte.

On every answer: `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` (unless the route
set its own caching, as JWKS and discovery do), `Referrer-Policy: no-referrer` and
`X-Frame-Options: DENY` (the login page must not be framed).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cellplane.api.jsonresp import JSONResponse, problem
from cellplane.validation import MAX_JSON_DEPTH, find_bad_text

__all__ = ["DEFAULT_MAX_BODY_BYTES", "RequestGuard", "is_json"]

#: The default limit of a request body (image uploads stream and have their own).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The default limit of a request's headers, names and values together (as nginx's 4 x 8 KiB).
DEFAULT_MAX_HEADER_BYTES = 32 * 1024

_SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would decode a body of this type as JSON (it does when none is given)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class RequestGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        streamed: Callable[[str, str], bool] = lambda method, path: False,
        json_only: Callable[[str], bool] = lambda path: False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.streamed = streamed
        self.json_only = json_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        refused = _url_problem(scope)
        if refused is not None:
            await refused(scope, receive, send)
            return
        raw_headers = scope.get("headers") or ()
        size = sum(len(k) + len(v) + 4 for k, v in raw_headers)
        if size > self.max_header_bytes:
            detail = (
                f"the request's headers take {size} bytes, more than this server's limit of "
                f"{self.max_header_bytes} bytes"
            )
            refused = problem(431, "headers-too-large", "Request headers too large", detail)
            refused.headers["connection"] = "close"
            await refused(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in raw_headers}
        length = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        streamed = self.streamed(scope["method"], scope["path"])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        has_body = chunked or (length is not None and length.strip() not in (b"", b"0"))
        if (
            has_body
            and not streamed
            and not is_json(content_type)
            and self.json_only(scope["path"])
        ):
            media = content_type.split(";", 1)[0].strip()
            detail = f"this route takes a JSON body (application/json), not {media}"
            refused = problem(415, "unsupported-media-type", "Unsupported media type", detail)
            refused.headers["connection"] = "close"  # the body is not read
            await refused(scope, receive, send)
            return
        if (length is None and not chunked) or streamed:
            await self.app(scope, receive, send)
            return
        if length is not None:
            if not length.strip().isdigit():
                refused = problem(
                    400, "malformed", "Malformed request", "Content-Length is not a number"
                )
                await refused(scope, receive, send)
                return
            if int(length) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return
        if body and is_json(content_type):
            refused = _json_problem(bytes(body))
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (
            f"the request body is larger than this server's limit of {self.max_body_bytes} bytes"
        )
        response = problem(413, "too-large", "Request body too large", detail)
        response.headers["connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


def _url_problem(scope: Scope) -> JSONResponse | None:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
    query: bytes = scope.get("query_string") or b""
    if b"%00" in raw_path or b"%00" in query or "\x00" in scope["path"]:
        return problem(400, "malformed", "Malformed request", "the URL holds a NUL character (%00)")
    return None


def _json_problem(body: bytes) -> JSONResponse | None:
    try:
        doc = json.loads(body)
    except UnicodeDecodeError as e:
        detail = f"the body is not valid UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})"
        return problem(400, "malformed", "Malformed request", detail)
    except RecursionError:
        detail = f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        return problem(400, "malformed", "Malformed request", detail)
    except ValueError:
        return None  # not JSON: the route's own parsing answers with its precise error
    found = find_bad_text(doc)
    if found is None:
        return None
    field, message, too_deep = found
    if too_deep:
        return problem(400, "malformed", "Malformed request", f"{field}: {message}")
    return problem(
        422,
        "validation",
        "Invalid request",
        f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_security_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
            message = {**message, "headers": headers}
        await send(message)

    return wrapped
