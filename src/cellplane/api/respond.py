"""Turn a service `Outcome` into a response (status, JSON body, Location)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from cellplane.api.deps import IdempotencyContext
from cellplane.api.jsonresp import JSONResponse
from cellplane.services import idempotency
from cellplane.services.context import Principal, Services
from cellplane.services.idempotency import Outcome

__all__ = ["idempotent", "outcome_response"]


def outcome_response(out: Outcome) -> JSONResponse:
    headers = {"Location": out.location} if out.location else None
    return JSONResponse(out.body, status_code=out.status, headers=headers)


def idempotent(
    svc: Services, p: Principal, ctx: IdempotencyContext, fn: Callable[[Session], Outcome]
) -> JSONResponse:
    """Run a POST's change once per Idempotency-Key and answer with its (stored) outcome."""
    return outcome_response(
        idempotency.run(svc, p, ctx.key, ctx.fingerprint, ctx.method, ctx.path, fn)
    )
