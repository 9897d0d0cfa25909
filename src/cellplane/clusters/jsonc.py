"""JSON as Serengeti's readers accepted it: comments, bare words, a stray closing brace.

Serengeti read specs with lenient parsers (Gson in lenient mode on the server, Jackson in the
CLI), and its published files rely on that:

* ``//`` line comments and ``/* */`` blocks anywhere between tokens;
* bare (unquoted) words as values and keys: ``"instance_type": SMALL`` reads as the string
  ``"SMALL"`` (``true``, ``false``, ``null`` and JSON numbers keep their JSON meaning);
* content after the document that is only closing braces or brackets (a stray ``}`` left
  by an edit) is ignored, as Jackson ignored trailing tokens. Anything else after the
  document is refused: it is more likely a second spec pasted by mistake.

What is refused, always with a line and column and never with a traceback: bytes that are
not UTF-8 (:func:`load_file`), nesting deeper than :data:`MAX_DEPTH`, an unterminated
string or comment, numbers too long to be a count. Every caller that reads a spec or a
catalog file (the spec parser, the catalog loader, the CLI's ``--specFile``) goes through
:func:`loads` or :func:`load_file`, so they all accept and refuse the same texts.

Implementation: one regular-expression pass tokenises the text (linear), bare words are
quoted, comments dropped, depth counted; the rebuilt text is then decoded by :mod:`json`.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from pathlib import Path
from typing import Any

__all__ = ["MAX_DEPTH", "JsoncError", "load_file", "loads", "strip_comments"]

MAX_DEPTH = 64
"""Objects and arrays nested deeper than this are refused (a spec needs about 6)."""

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_MAX_NUMBER_CHARS = 40
_CLOSING = {"{": "}", "[": "]"}
_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n\ufeff]+)
  | (?P<line>//[^\n]*)
  | (?P<block>/\*(?:[^*]|\*(?!/))*\*/)
  | (?P<open_block>/\*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<open_string>")
  | (?P<squote>'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[{}\[\]:,])
  | (?P<word>[^\s{}\[\]:,"'/]+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class JsoncError(ValueError):
    """The text is not a spec Serengeti's readers would have read; says where and why."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        self.line = line
        self.column = column
        where = f"line {line} column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _error(text: str, offset: int, message: str) -> JsoncError:
    line, column = _position(text, offset)
    return JsoncError(message, line=line, column=column)


def _single_quoted(body: str) -> str:
    # 'it\'s' -> "it's"; a double quote inside must be escaped for JSON.
    inner = body[1:-1].replace("\\'", "'")
    return '"' + inner.replace('"', '\\"') + '"'


def _rebuild(text: str) -> tuple[str, list[int], list[int]]:
    """JSON text equivalent to `text`, with offset maps (rebuilt offset -> original offset)."""
    out: list[str] = []
    new_offsets: list[int] = []
    old_offsets: list[int] = []
    size = 0
    stack: list[str] = []
    started = False
    closed_at: int | None = None  # offset where the top-level value ended
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        start = m.start()
        if kind in ("ws", "line", "block"):
            continue
        if kind == "open_block":
            raise _error(text, start, "unterminated /* comment")
        if kind == "open_string":
            raise _error(text, start, "unterminated string (a string must end on its line)")
        if kind == "other":
            raise _error(text, start, f"unexpected character {m.group()!r}")
        token = m.group()
        if closed_at is not None:
            if kind == "punct" and token in "}]":
                continue  # a stray closing brace after the document: tolerated
            raise _error(text, start, "unexpected content after the end of the document")
        if kind == "punct":
            if token in "{[":
                stack.append(token)
                started = True
                if len(stack) > MAX_DEPTH:
                    raise _error(text, start, f"nested deeper than {MAX_DEPTH} levels")
            elif token in "}]":
                if not stack:
                    raise _error(text, start, f"unexpected {token!r}")
                opened = stack.pop()
                if _CLOSING[opened] != token:
                    raise _error(text, start, f"expected {_CLOSING[opened]!r}, found {token!r}")
                if not stack:
                    closed_at = start
        elif kind == "word":
            if token in ("true", "false", "null"):
                pass
            elif _NUMBER.fullmatch(token):
                if len(token) > _MAX_NUMBER_CHARS:
                    raise _error(text, start, f"number too long ({len(token)} characters)")
            else:
                token = json.dumps(token)
            if not started:
                closed_at = start  # a bare scalar document
        elif kind == "squote":
            token = _single_quoted(token)
            if not started:
                closed_at = start
        elif kind == "string" and not started:
            closed_at = start
        new_offsets.append(size)
        old_offsets.append(start)
        out.append(token)
        out.append(" ")
        size += len(token) + 1
    if not out:
        raise JsoncError("empty document (no JSON value)")
    if stack:
        raise _error(text, len(text), f"unexpected end of the document ({stack[-1]!r} not closed)")
    return "".join(out), new_offsets, old_offsets


def loads(text: str) -> Any:
    """Parse `text` as Serengeti read it; raise :class:`JsoncError` saying where it is wrong."""
    rebuilt, new_offsets, old_offsets = _rebuild(text)
    try:
        return json.loads(rebuilt, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        i = max(bisect_right(new_offsets, exc.pos) - 1, 0)
        original = old_offsets[i] + max(exc.pos - new_offsets[i], 0) if old_offsets else 0
        raise _error(text, min(original, len(text)), exc.msg) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer over Python's digit limit
        raise JsoncError(f"invalid value: {exc}") from None


def _no_constant(name: str) -> Any:  # pragma: no cover - bare NaN/Infinity are quoted first
    raise ValueError(f"{name} is not a JSON value")


def load_file(path: Path) -> Any:
    """Read and parse a file; unreadable, non-UTF-8 or malformed content is a JsoncError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JsoncError(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        prefix = raw[: exc.start].decode("utf-8", "replace")
        line, column = _position(prefix, len(prefix))
        raise JsoncError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            line=line,
            column=column,
        ) from None
    return loads(text)


def strip_comments(text: str) -> str:
    """Replace comments outside strings by spaces, keeping newlines and offsets."""
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "line":
            out.append(" " * len(m.group()))
        elif m.lastgroup == "block":
            out.append("".join(c if c == "\n" else " " for c in m.group()))
        else:
            out.append(m.group())
    return "".join(out)
