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

from cellplane.errors import IdempotencyMismatch
from cellplane.ids import utcnow
from cellplane.services.context import Principal, Services
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
    """Run `fn` in one transaction, or replay the answer stored under `key`."""
    for attempt in range(2):
        try:
            with svc.db.session() as s:
                if key:
                    rec = s.get(IdempotencyRecord, (principal.key, key))
                    if rec is not None:
                        if rec.body_hash != fingerprint:
                            raise IdempotencyMismatch(
                                f"Idempotency-Key {key!r} was used for a different request"
                            )
                        return Outcome(rec.status, rec.response, rec.location)
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
            if out.topics:
                svc.notifier.publish(*out.topics)
            return out
        except IntegrityError:
            # Lost a race with the same key (or a unique name): look again once.
            if attempt == 1 or not key:
                raise
    raise AssertionError("unreachable")
