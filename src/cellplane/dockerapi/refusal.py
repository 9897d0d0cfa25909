"""The endpoint's refusal: Docker's error answer (`{"message": ...}`) with its HTTP status.

Its own module so that the pure mappings (`mapping`, `healthchecks`) can all raise it;
`dockerapi.mapping` re-exports it.
"""

from __future__ import annotations

__all__ = ["Refused"]


class Refused(Exception):
    """A request the endpoint does not carry out: Docker's `{"message": ...}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
