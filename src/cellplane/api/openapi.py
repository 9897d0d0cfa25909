"""The OpenAPI document: FastAPI's, with every operation's problem+json error answers.

FastAPI documents what a route declares (its response model, its status) and a 422 of its own
validation-error shape, which this server never sends. Here every operation gets the problem
answers it can give, derived from what it is, the same way the answers themselves arise:

| status | when | from |
|---|---|---|
| 400 | always: a NUL in the URL; with a body, JSON that is malformed or nests too deep | `api/guard.py`, `api/errors.py` |
| 401 | the operation has a security requirement (token, host token, join token) | `api/deps.py` |
| 403 | the same: the caller lacks the operation's permission | `api/deps.py` |
| 404 | a path parameter names something (or another tenant's: it does not exist for the caller) | services |
| 409 | the operation changes state: duplicates, in use, wrong state, capacity, quota, a refused agent | services, `api/errors.py` |
| 413 | the operation takes a body | `api/guard.py` |
| 415 | it takes a JSON body under /v1/: a body of another media type | `api/guard.py` |
| 422 | it takes a body, a query or an `Idempotency-Key` (any POST) | `api/errors.py`, services |
| 431 | always: request headers over the server's limit | `api/guard.py` |
| 503 | it reads or writes the database (every /v1/ and /identity/ operation): the database busy past its timeout or unreachable for a moment; `Retry-After` | `api/errors.py` |
| 507 | it changes state: the disk under the database or the data directory is full | `api/errors.py` |

A route adds what no rule implies with its own `responses=` (`GET /v1/identity/ldap` answers
404 with no path parameter; `PUT /v1/identity/ldap` 429). One shared schema, `Problem`, describes
them all. The OpenID Connect endpoints (`/identity/{tenant}/...`) answer OAuth errors (RFC 6749
5.2, declared on those routes); of the problems they give only 400, 404 (an unknown tenant), 503 and 507.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from cellplane.api.models import Problem

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "EventStream",
    "Html",
    "Pem",
    "PlainText",
    "Tarball",
    "install",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF = "#/components/schemas/Problem"
_CHANGES = {"post", "put", "patch", "delete"}

_DESCRIPTIONS = {
    "400": "Malformed request: a NUL in the URL, a body that is not JSON or nests too deeply, "
    "a cursor this server did not issue.",
    "401": "No credentials, or credentials that are not valid (expired, revoked, unknown).",
    "403": "The caller lacks the permission this operation needs.",
    "404": "It does not exist, or not for this caller (another tenant's, another project's).",
    "409": "Conflict: it already exists, is in use or in the wrong state; no capacity; quota "
    "exceeded; the host's agent refused or could not be reached.",
    "413": "The request body is larger than this server's limit.",
    "415": "The body is not JSON (its Content-Type names another media type).",
    "431": "The request's headers are larger than this server's limit.",
    "422": "Invalid request: every wrong field is named in `errors`; or an Idempotency-Key "
    "reused with another body.",
    "429": "Too many requests: try again after `Retry-After` seconds.",
    "503": "The database is busy past its timeout or cannot be reached for a moment: nothing was "
    "changed; try again after `Retry-After` seconds.",
    "507": "The disk under the database or the data directory is full: nothing was changed.",
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """A `responses=` entry for a problem answer no rule of this module implies."""
    return {
        "description": description or _DESCRIPTIONS.get(str(status), "Problem"),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF}}},
    }


def _statuses(method: str, path: str, op: dict[str, Any]) -> list[str]:
    params = op.get("parameters") or []
    if path.startswith("/identity/"):
        return ["400", "404", "431", "503"] + (["507"] if method in _CHANGES else [])
    out = ["400", "431"]
    if path.startswith("/v1/"):
        out.append("503")
        if method in _CHANGES:
            out.append("507")
    if op.get("security"):
        out += ["401", "403"]
    if re.search(r"\{\w+\}", path):
        out.append("404")
    if method in _CHANGES:
        out.append("409")
    if "requestBody" in op:
        out.append("413")
        if path.startswith("/v1/") and "application/json" in op["requestBody"].get("content", {}):
            out.append("415")
    if "requestBody" in op or method == "post" or any(p.get("in") != "path" for p in params):
        out.append("422")
    return out


def add_problems(doc: dict[str, Any]) -> dict[str, Any]:
    """Every operation's problem answers and the shared `Problem` schema, in place."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, never sent here
        schemas.pop(name, None)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            for status in _statuses(method, path, op):
                current = responses.get(status)
                if current is None or "HTTPValidationError" in str(current.get("content")):
                    responses[status] = problem_response(int(status))
                else:  # the route's own answer (an OAuth error, a page) and the problem
                    content = current.setdefault("content", {})
                    content.setdefault(PROBLEM_MEDIA_TYPE, {"schema": {"$ref": _REF}})
            for status, answer in responses.items():
                if "HTTPValidationError" in str(answer.get("content")):
                    responses[status] = problem_response(int(status))
    return doc


def install(app: FastAPI) -> None:
    """Serve the completed document at `app.openapi_url` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = add_problems(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# Response classes that only name a route's media type in the document (the routes build their
# own responses: streams, files, PEM).
class PlainText(Response):
    media_type = "text/plain"


class EventStream(Response):
    media_type = "text/event-stream"


class Tarball(Response):
    media_type = "application/x-tar"


class Pem(Response):
    media_type = "application/x-pem-file"


class Html(Response):
    media_type = "text/html"
