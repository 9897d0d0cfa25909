"""The only place exceptions become HTTP answers: RFC 9457 problem documents.

Domain errors (`cellplane.errors`), request validation errors (with field paths), malformed JSON and
database integrity races each map to one problem type. Anything else is a 500 with no internals.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cellplane.api.jsonresp import PROBLEM_BASE, JSONResponse, problem
from cellplane.errors import CellplaneError, ValidationFailed

__all__ = ["PROBLEM_BASE", "install", "problem"]

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
            {"field": _field_path(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
            for e in errs
        ]
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return problem(422, "validation", "Invalid request", detail, errors=fields)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        return problem(
            409, "conflict", "Conflict", "a concurrent request changed the same resource"
        )

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
