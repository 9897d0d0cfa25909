"""The API's JSON answers: one response class that cannot fail to encode, and problem documents.

Text is checked where it enters (`api/guard.py`), but a row stored before that check, or a string
the server made itself, must still never turn an answer (a cell list, an agent's work feed) into a
500: a lone surrogate that UTF-8 cannot encode is sent as U+FFFD instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.responses import JSONResponse as _FastAPIJSONResponse

__all__ = ["PROBLEM_BASE", "JSONResponse", "problem"]

PROBLEM_BASE = "https://cellplane.dev/problems/"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class JSONResponse(_FastAPIJSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem document."""
    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")
