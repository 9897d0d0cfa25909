"""The SDK's exceptions: every failure of a request reaches the caller as one of these.

Raised by every `cellplane.client` module; built from the RFC 9457 problem document of an
error answer (`CellplaneError.from_response`) in one place, the transport (`_base`).

Exceptions::

    CellplaneError                  an API error answer, or no answer at all
     +-- CellplaneConnectionError   the server could not be reached (after retries)
     +-- CellplaneTimeoutError      a wait ran out of time (also a TimeoutError)
"""

from __future__ import annotations

import json
from typing import Any

import httpx

__all__ = ["CellplaneConnectionError", "CellplaneError", "CellplaneTimeoutError"]

JSONDict = dict[str, Any]


class CellplaneError(Exception):
    """An error answer from the API (RFC 9457 problem), or a failure to get one."""

    def __init__(
        self,
        title: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        type: str | None = None,
        errors: list[JSONDict] | None = None,
    ) -> None:
        self.title = title
        self.detail = detail
        self.status = status
        self.type = type
        self.errors: list[JSONDict] = errors or []
        super().__init__(self._message())

    def _message(self) -> str:
        head = self.title if self.status is None else f"{self.title} ({self.status})"
        detail = self.detail
        if not detail and self.errors:
            detail = "; ".join(
                f"{e.get('field', '?')}: {e.get('message', '')}" for e in self.errors
            )
        text = f"{head}: {detail}" if detail else head
        # One line, whatever the server put in its detail.
        return " ".join(text.split())

    def __str__(self) -> str:
        return self._message()

    @classmethod
    def from_response(cls, response: httpx.Response) -> CellplaneError:
        """Build the error from an error answer; the body must already be read."""
        status = response.status_code
        reason = response.reason_phrase or "HTTP error"
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict):
            raw_errors = body.get("errors")
            errors = [e for e in raw_errors if isinstance(e, dict)] if raw_errors else []
            return cls(
                str(body.get("title") or reason),
                None if body.get("detail") is None else str(body["detail"]),
                status=status,
                type=None if body.get("type") is None else str(body["type"]),
                errors=errors,
            )
        text = response.text.strip()
        return cls(reason, text[:300] or None, status=status)


class CellplaneConnectionError(CellplaneError):
    """The server could not be reached, even after the retries."""


class CellplaneTimeoutError(CellplaneError, TimeoutError):
    """A wait (for a task) ran past its deadline; the operation itself goes on."""
