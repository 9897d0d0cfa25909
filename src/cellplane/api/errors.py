"""The only place exceptions become HTTP answers: RFC 9457 problem documents.

Domain errors (`cellplane.errors`), request validation errors (with field paths), malformed JSON and
database integrity errors (`integrity_problem`) each map to one problem type; so do the
database's and the disk's own conditions (`database_problem`): a full disk is 507, a database
busy past its timeout or unreachable for a moment is 503 with Retry-After; nothing was changed.
Anything else is a 500 with no internals.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cellplane.api.jsonresp import PROBLEM_BASE, JSONResponse, problem
from cellplane.errors import CellplaneError, ValidationFailed
from cellplane.state.conflicts import PG_CONFLICTS

__all__ = [
    "PROBLEM_BASE",
    "database_problem",
    "install",
    "integrity_problem",
    "plain_message",
    "problem",
    "validation_detail",
]

log = structlog.get_logger("cellplane.api")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's).
    `app.state.api_routes` lists the routes (FastAPI nests included routers)."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "api_routes", ()):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


# pydantic's prefixes on the messages of validators ("Value error, give a flavor ..."): the
# message after them is the project's own, written for people.
_PYDANTIC_PREFIX = re.compile(r"^(?:Value error|Assertion failed), ")


def plain_message(error: Mapping[str, Any]) -> str:
    """One pydantic error in plain words: no "Value error, " prefix; a missing or unknown field
    says so ("is required", "is not a field of this request")."""
    kind = str(error.get("type", ""))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of this request"
    msg = _PYDANTIC_PREFIX.sub("", str(error.get("msg", "invalid")))
    # "Input should be ..." -> "input should be ..." (it follows "field: "); "URL ..." stays.
    return msg if msg[:2].isupper() else msg[:1].lower() + msg[1:]


def validation_detail(fields: list[dict[str, str]]) -> str:
    """The `detail` of a 422: each problem once, naming its field ("memory_mb: ..."); a problem of
    the whole body (a rule across fields) is its message alone."""
    return "; ".join(
        f["message"] if f["field"] == "body" else f"{f['field']}: {f['message']}" for f in fields
    )


_UNIQUE = re.compile(r"UNIQUE constraint failed: (\w+)\.(\w+)")  # SQLite
_PG_TABLE = re.compile(r'on table "(\w+)"')  # PostgreSQL: the referencing table
_PG_KEY = re.compile(r"Key \(([\w, ]+)\)=")  # PostgreSQL: the unique key's columns


def _noun(table: str) -> str:
    """`audit_events` -> "audit event", `quotas` -> "quota"."""
    word = table.replace("_", " ")
    return word[:-1] if word.endswith("s") else word


def integrity_problem(exc: IntegrityError) -> tuple[int, str, str, str]:
    """(status, slug, title, detail) of a constraint the database enforced.

    Services check their rules before writing, so an integrity error means either a race two
    requests ran (a unique constraint: the same name created twice at once: "already exists"),
    a foreign key (a delete that left something referencing the row: "still referenced by ...",
    or a write naming something deleted meanwhile), or a bug (any other constraint: a 500, logged).
    Never "a concurrent change" for what is not one."""
    orig = exc.orig
    message = str(orig)
    code = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    diag = getattr(orig, "diag", None)
    statement = (exc.statement or "").lstrip().upper()
    if code == "23505" or "UNIQUE constraint failed" in message:
        m = _UNIQUE.search(message)
        table = getattr(diag, "table_name", None) or (m.group(1) if m else None)
        k = _PG_KEY.search(message)
        column = m.group(2) if m else (k.group(1).split(", ")[-1] if k else None)
        what = f"a {_noun(table)}" if table else "a resource"
        with_ = f" with this {column}" if column and column != "id" else " with the same key"
        return 409, "conflict", "Already exists", f"{what}{with_} already exists"
    if code == "23503" or "FOREIGN KEY constraint failed" in message:
        tables = _PG_TABLE.findall(message)
        if statement.startswith("DELETE"):
            by = f" by {_noun(tables[-1])} records" if len(tables) > 1 else " by other records"
            return 409, "conflict", "Still referenced", f"the resource is still referenced{by}"
        return (
            409,
            "conflict",
            "Refers to a missing resource",
            "the request refers to a resource that does not exist (or was just deleted)",
        )
    return 500, "internal", "Internal error", "the server failed; see its log"


_FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")
_BUSY = ("database is locked", "database table is locked")
_UNREACHABLE = (
    "server closed the connection",
    "connection refused",
    "terminating connection",
    "the database system is shutting down",
    "the database system is starting up",
    "could not connect",
    "connection is closed",
    "connection already closed",
    "consuming input failed",
    "no connection to the server",
)
_NOSPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def database_problem(exc: BaseException) -> tuple[int, str, str, str] | None:
    """(status, slug, title, detail) of a condition of the database or the disk, not of the
    request: the transaction was rolled back, so nothing changed and a retry may succeed. None
    for anything else (a 500)."""
    if isinstance(exc, OSError) and exc.errno in _NOSPACE_ERRNOS:
        message = "no space left on device"
    elif isinstance(exc, DBAPIError):
        message = str(exc.orig).lower()
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == "53100":  # PostgreSQL: disk full
            message = "no space left on device"
        elif sqlstate in PG_CONFLICTS:
            message = "database is locked"  # rolled back by PostgreSQL: a retry may pass
        elif exc.connection_invalidated or (
            # PostgreSQL (psycopg): no connection at all (no SQLSTATE), a connection exception
            # (class 08), the server shutting down or restarting (57P0x)
            isinstance(exc, OperationalError | InterfaceError)
            and type(exc.orig).__module__.startswith("psycopg")
            and (sqlstate is None or sqlstate.startswith(("08", "57P")))
        ):
            message = "connection is closed"
    else:
        return None
    if any(m in message for m in _FULL):
        return (
            507,
            "storage-full",
            "Insufficient storage",
            "the server's data directory is full: nothing was changed; free space and retry",
        )
    if any(m in message for m in _BUSY):
        return (
            503,
            "unavailable",
            "Database busy",
            "the database stayed locked by other writers past its busy timeout: nothing was "
            "changed; retry",
        )
    if any(m in message for m in _UNREACHABLE):
        return (
            503,
            "unavailable",
            "Database unavailable",
            "the server lost its database connection: nothing was changed; retry",
        )
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(CellplaneError)
    async def _domain(_: Request, exc: CellplaneError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(exc, ValidationFailed):
            extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
        return problem(exc.status, exc.slug, exc.title, exc.detail, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            msg = next(e.get("msg", "") for e in errs if e.get("type") == "json_invalid")
            ctx = next((e.get("ctx") or {} for e in errs if e.get("type") == "json_invalid"), {})
            detail = f"the body is not valid JSON: {ctx.get('error', msg)}"
            return problem(400, "malformed", "Malformed request", detail)
        fields = [
            {"field": _field_path(e.get("loc", ())), "message": plain_message(e)} for e in errs
        ]
        return problem(
            422, "validation", "Invalid request", validation_detail(fields), errors=fields
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        status, slug, title, detail = integrity_problem(exc)
        if status == 500:
            log.error("integrity error", path=request.url.path, error=str(exc.orig))
        return problem(status, slug, title, detail)

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        known = database_problem(exc)
        if known is None:
            return await _crash(request, exc)
        status, slug, title, detail = known
        log.warning("database or disk condition", path=request.url.path, error=str(exc)[:300])
        response = problem(status, slug, title, detail)
        if status == 503:
            response.headers["Retry-After"] = "1"
        return response

    app.add_exception_handler(DBAPIError, _storage)
    app.add_exception_handler(OSError, _storage)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http"
        )
        response = problem(exc.status_code, slug, str(exc.detail), str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request) or response.headers.get(
                "Allow", ""
            )
        return response

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem(500, "internal", "Internal error", "the server failed; see its log")
