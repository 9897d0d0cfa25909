"""Domain errors raised by services; `cellplane.api.errors` is the one place that maps them to HTTP.

CellplaneError
├── ValidationFailed       422, with field paths
├── NotFound               404
├── Conflict               409 (duplicate name, in use, wrong state)
│   ├── InsufficientCapacity   409, names the binding resource
│   └── QuotaExceeded          409
├── Unauthorized           401
├── Forbidden              403
├── IdempotencyMismatch    422
├── BadRequest             400 (a malformed request: bad cursor, NUL in the URL, too deep)
├── PayloadTooLarge        413 (a body over the server's limit)
└── UnsupportedMediaType   415 (a body of another media type than the route takes)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BadRequest",
    "CellplaneError",
    "Conflict",
    "FieldError",
    "Forbidden",
    "IdempotencyMismatch",
    "InsufficientCapacity",
    "NotFound",
    "PayloadTooLarge",
    "QuotaExceeded",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
]


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class CellplaneError(Exception):
    status = 500
    slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(CellplaneError):
    status = 422
    slug = "validation"
    title = "Invalid request"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls([FieldError(field, message)])


class NotFound(CellplaneError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(CellplaneError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class InsufficientCapacity(Conflict):
    slug = "insufficient-capacity"
    title = "Insufficient capacity"


class QuotaExceeded(Conflict):
    slug = "quota-exceeded"
    title = "Quota exceeded"


class Unauthorized(CellplaneError):
    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class Forbidden(CellplaneError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class IdempotencyMismatch(CellplaneError):
    status = 422
    slug = "idempotency-mismatch"
    title = "Idempotency key reused with a different request"


class BadRequest(ValidationFailed):
    """A request that is malformed rather than invalid (a cursor the server never issued)."""

    status = 400
    slug = "malformed"
    title = "Malformed request"


class PayloadTooLarge(CellplaneError):
    status = 413
    slug = "too-large"
    title = "Request body too large"


class UnsupportedMediaType(CellplaneError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"
