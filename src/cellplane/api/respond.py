"""Turn a service `Outcome` into a response (status, JSON body, Location)."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from cellplane.services.idempotency import Outcome

__all__ = ["outcome_response"]


def outcome_response(out: Outcome) -> JSONResponse:
    headers = {"Location": out.location} if out.location else None
    return JSONResponse(out.body, status_code=out.status, headers=headers)
