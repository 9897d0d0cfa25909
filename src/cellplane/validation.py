"""Text rules every layer shares: what a name may be and what no string may hold.

Called by the API's request guard (every JSON body, before any route parses it), by the request
models (names) and by the agent (names it turns into engine objects). Patterns are matched with
`fullmatch`: `re.match` with `^...$` accepts a trailing newline (`"web\\n"`), which once let names
with a newline into the database.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

__all__ = [
    "DNS_LABEL",
    "DNS_LABEL_MSG",
    "IMAGE_NAME",
    "IMAGE_NAME_MSG",
    "MAX_JSON_DEPTH",
    "BadText",
    "find_bad_text",
    "is_dns_label",
    "text_problem",
    "user_name",
]

#: A DNS label (RFC 1123): the names of cells, volumes, projects and tenants.
DNS_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DNS_LABEL_MSG: Final = (
    "must be a DNS label: 1-63 of a-z, 0-9 and '-', starting and ending alphanumeric"
)
#: An image's name: letters, digits and `_.:@+-`, no '/' (it names a file), 1-128 characters.
IMAGE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
IMAGE_NAME_MSG: Final = "1-128 of letters, digits and '_.:@+-', starting with a letter or digit"
#: Deepest nesting of arrays and objects a request body may have (cluster specs need ~6).
MAX_JSON_DEPTH: Final = 32

_BAD_CHARS: Final = re.compile(r"[\x00\ud800-\udfff]")


def user_name(name: str) -> str:
    """User names are case-insensitive (`Admin` is `admin`), as in most identity providers: kept
    and compared in lower case, so no tenant holds two users that differ only by case."""
    return name.lower()


def is_dns_label(value: str) -> bool:
    return DNS_LABEL.fullmatch(value) is not None


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored and sent on (None if it can).

    A lone UTF-16 surrogate (JSON `"\\ud800"`) decodes to a str that cannot be encoded as UTF-8:
    stored, it breaks every answer that carries it. A NUL cannot reach a process (argv, env) or
    most files. Both are refused wherever text enters.
    """
    m = _BAD_CHARS.search(value)
    if m is None:
        return None
    if m.group() == "\x00":
        return "must not contain a NUL character"
    return f"must not contain a lone UTF-16 surrogate (U+{ord(m.group()):04X})"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class BadText(NamedTuple):
    field: str
    message: str
    too_deep: bool = False  # nesting (a malformed body) rather than a bad string


def find_bad_text(doc: Any, max_depth: int = MAX_JSON_DEPTH) -> BadText | None:
    """The first string (key or value) in a decoded JSON document that `text_problem` refuses,
    or the first container nested deeper than `max_depth`."""
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            msg = text_problem(node)
            if msg:
                return BadText(path or "body", msg)
        elif isinstance(node, dict | list):
            if depth >= max_depth:
                return BadText(path or "body", f"is nested deeper than {max_depth} levels", True)
            if isinstance(node, dict):
                for k, v in node.items():
                    msg = text_problem(k)
                    if msg:
                        # The key itself cannot be printed safely: name its container.
                        return BadText(path or "body", f"a key {msg}")
                    stack.append((v, _join(path, k), depth + 1))
            else:
                stack.extend((v, _join(path, i), depth + 1) for i, v in enumerate(node))
    return None
