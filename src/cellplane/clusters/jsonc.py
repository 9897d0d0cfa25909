"""JSON with comments, as Serengeti writes it.

Serengeti's sample specs carry ``//`` line comments (and its server accepts
``/* */`` blocks); the spec parser and the catalog loader read them through
:func:`loads` so the published files load unchanged. Comments are blanked
rather than removed, so JSON error positions still point into the original text.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads", "strip_comments"]


def strip_comments(text: str) -> str:
    """Replace comments outside strings by spaces, keeping newlines and offsets."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out.append("".join(c if c == "\n" else " " for c in text[i:end]))
            i = end
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def loads(text: str) -> Any:
    """Parse JSON that may contain ``//`` and ``/* */`` comments."""
    return json.loads(strip_comments(text))
