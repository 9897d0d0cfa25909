"""What the provider answers, as data: JSON or raw bodies (`Answer`) and HTML pages (`Page`).

The provider does not import a web framework. authlib hands it (status, body, headers) triples;
`TenantServer.handle_response` wraps them in an `Answer`. The login page and the short messages
of the authorization and logout endpoints are a `Page`: a template name and its values. The api
layer (`api/pages.py`) turns both into HTTP responses and renders pages from
`api/templates/` with Jinja2 (autoescaped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "Cookie", "Page", "Reply", "message"]


@dataclass
class Answer:
    """An HTTP answer: a dict body is JSON, anything else is sent as it is (bytes or text)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cookie:
    name: str
    value: str
    max_age: int
    path: str
    secure: bool
    httponly: bool = True
    samesite: str = "strict"


@dataclass
class Page:
    """An HTML page: `template` (under api/templates/) rendered with `values`."""

    template: str
    status: int
    values: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    cookie: Cookie | None = None


Reply = Answer | Page


def message(title: str, text: str, status: int, *, error: str | None = None) -> Page:
    """A page with one message (sign-in refused, signed out); `error` is an OAuth error code."""
    return Page("message.html", status, {"title": title, "message": text, "error": error})
