"""`Idempotency-Key` for POSTs: the answer is stored in the same transaction as the change.

So a client that lost the connection (or saw the server die) can repeat the request with the same key
and get the first answer, and never two cells for one request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cellplane.errors import CellplaneError, IdempotencyMismatch
from cellplane.ids import utcnow
from cellplane.services.context import Principal, Services
from cellplane.state.conflicts import retry_conflicts
from cellplane.state.models import IdempotencyRecord

__all__ = ["Outcome", "body_hash", "run"]


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    location: str | None = None
    topics: tuple[str, ...] = field(default=())


def body_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def run(
    svc: Services,
    principal: Principal,
    key: str | None,
    fingerprint: str,
    method: str,
    path: str,
    fn: Callable[[Session], Outcome],
) -> Outcome:
    """Run `fn` in one transaction, or replay the answer stored under `key`.

    A transaction PostgreSQL rolled back for a conflict with another (`state.conflicts`) wrote
    nothing: it runs again, a few times, before the client is answered 503. A change that
    fails while a request with the same key committed first (a client's retry racing its
    original: the unique name or key refused, or the name already taken when looked up) is
    answered with that request's stored answer.
    """

    def stored(s: Session) -> Outcome | None:
        rec = s.get(IdempotencyRecord, (principal.key, key))
        if rec is None:
            return None
        if rec.body_hash != fingerprint:
            raise IdempotencyMismatch(f"Idempotency-Key {key!r} was used for a different request")
        return Outcome(rec.status, rec.response, rec.location)

    def once() -> Outcome:
        with svc.db.session() as s:
            if key and (earlier := stored(s)) is not None:
                return earlier
            out = fn(s)
            if key:
                s.add(
                    IdempotencyRecord(
                        principal=principal.key,
                        key=key,
                        method=method,
                        path=path,
                        body_hash=fingerprint,
                        status=out.status,
                        response=out.body,
                        location=out.location,
                        created_at=utcnow(),
                    )
                )
        return out

    try:
        out = retry_conflicts(once)
    except (IntegrityError, CellplaneError):
        if not key:
            raise
        with svc.db.session() as s:
            earlier = stored(s)
        if earlier is None:
            raise
        return earlier
    if out.topics:
        svc.notifier.publish(*out.topics)
    return out
