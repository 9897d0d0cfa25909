"""The portal's static files (`/portal/static/...`), fuzzed (issue 14).

`StaticTarget` mounts the portal on a `FuzzServer` (as the server does) and sends requests over a
raw socket, byte for byte as drawn (an HTTP client would normalise `..` and refuse a NUL): paths
built from the static files' names and traversal pieces (`..`, `%2e%2e`, `%2f`, `%5c`,
backslashes, double encoding, absolute paths, NUL, very long names, unicode), any method, `Range`
headers (valid, reversed, open, suffix, multiple, overlapping, huge, a thousand ranges, garbage)
and `If-None-Match`, `If-Modified-Since`, `If-Range` (garbage, the real validators). Checks:

* no 5xx (`server_errors`); no traceback (`bad_error_bodies`);
* never a byte of a file outside `static/` (`leaks`): a 200 is the whole content of a static
  file, a 206 slices of one (each part's `Content-Range` checked against the file), a HEAD or 304
  has no body; no answer holds a piece of a secret (the portal's Python sources, the CA's keys,
  the database, `/etc/passwd`);
* a served file carries its `Content-Type` and a `Content-Length` equal to what was sent
  (`bad_headers`);
* nothing changes the database (`state_changes`: the digest of `FuzzServer`; the paths may leave
  `static/` for the portal's pages, whose forms refuse a post with no session).
"""

from __future__ import annotations

import mimetypes
import random
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

import cellplane.portal
from cellplane.portal import install
from cellplane.testing.fuzz import FuzzServer, Started
from cellplane.testing.fuzz_web import WebStats, looks_like_traceback, repeat, run_rounds

__all__ = ["StaticStats", "StaticTarget", "fuzz_static", "raw_request"]

STATIC = Path(cellplane.portal.__file__).parent / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
_PIECES = (
    "..", ".", "", "%2e%2e", "%2E%2E", ".%2e", "%252e%252e", "%2f", "%2F", "%5c", "%255c",
    "..%2f", "..%5c", "..\\", "..\\..\\", "\\", "%00", "\x00", "%c0%ae%c0%ae", "..;", "...",
    "/etc/passwd", "etc", "passwd", "%2fetc%2fpasswd", "app.py", "web.py", "__init__.py",
    "static", "portal", "cellplane", "identity", "ca", "\uff48tmx.min.js", "portal.css\u200b",
    "é", "\u202e", "~", "*", "?", "#", "%", "%zz", "a" * 300, "b" * 5000,
)  # fmt: skip
_METHODS = ("GET", "GET", "GET", "GET", "GET", "HEAD", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
            "FOO")  # fmt: skip
_RANGES = (
    "bytes=0-10", "bytes=-5", "bytes=5-", "bytes=0-0,5-10", "bytes=0-1,0-1", "bytes=10-5",
    "bytes=99999999-", "bytes=0-99999999999999999999", "bytes=--1", "bytes=a-b", "items=0-5",
    "bytes=", "bytes= 0 - 5", "bytes=0-5,", "bytes=-0", "bytes=0-", "bytes=1-2,3-4,5-6,7-8",
    "bytes=" + ",".join(f"{i}-{i}" for i in range(1000)), "bytes=-99999999999",
)  # fmt: skip
_VALIDATORS = ('"x"', "*", "W/", 'W/"abc"', "", "\u00ff", "a" * 2000, '"', "Mon, 32 Foo 2026",
               "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 01 Jan 9999 00:00:00 GMT", "0", "-1")  # fmt: skip
_SECRET_SNIPPET = 48


@dataclass
class StaticStats(WebStats):
    #: Answers holding a byte that is not a static file's (or a piece of a secret).
    leaks: int = 0
    #: Served files whose Content-Type or Content-Length is wrong.
    bad_headers: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            **super().summary(),
            "leaks": self.leaks,
            "bad_headers": self.bad_headers,
            "kinds": dict(sorted(self.kinds.items())),
        }


@dataclass
class Raw:
    status: int  # 0: no answer
    headers: dict[str, str]
    body: bytes


def raw_request(port: int, method: str, target: bytes, headers: dict[str, str]) -> Raw:
    """One HTTP/1.1 request sent as given (the target unnormalised), read to the end."""
    lines = [method.encode("latin-1") + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items()]
    data = b"\r\n".join([*lines, b"Connection: close", b"", b""])
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            got.extend(chunk)
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    first, *rest = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", first)
    if match is None:
        return Raw(0, {}, bytes(got))
    fields: dict[str, str] = {}
    for line in rest:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return Raw(int(match.group(1)), fields, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.extend(data[:size])
        data = data[size + 2 :]
    return bytes(out)


def _secrets(server: FuzzServer) -> dict[str, bytes]:
    """Pieces of files outside `static/` that no answer may hold."""
    files = [p for p in STATIC.parent.glob("*.py")] + [Path("/etc/passwd")]
    files += [p for p in server.svc.data_dir.rglob("*") if p.is_file()]
    files.append(server.dir / "cellplane.db")
    out: dict[str, bytes] = {}
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if len(data) >= _SECRET_SNIPPET:
            mid = len(data) // 2
            out[str(path)] = data[mid : mid + _SECRET_SNIPPET]
    return out


class StaticTarget(Started):
    """The portal's static files on `server`."""

    def __init__(self, server: FuzzServer) -> None:
        self.server = server
        self.files = {p.name: p.read_bytes() for p in sorted(STATIC.iterdir()) if p.is_file()}
        self.secrets: dict[str, bytes] = {}

    def start(self) -> None:
        if not any(getattr(r, "path", "") == "/portal" for r in self.server.app.routes):
            install(self.server.app)
        self.secrets = _secrets(self.server)

    def close(self) -> None:
        pass

    def content_type(self, name: str) -> str:
        suffix = Path(name).suffix
        return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclass
class _Example:
    method: str
    pieces: list[str]
    separator: str
    prefix: str
    headers: dict[str, str]


def _examples(files: list[str]) -> st.SearchStrategy[_Example]:
    piece = st.one_of(st.sampled_from(files), st.sampled_from(_PIECES), st.text(max_size=12))
    ranges = st.one_of(st.sampled_from(_RANGES), st.text(max_size=30))
    headers = st.one_of(
        st.just({}),
        st.builds(lambda r: {"Range": r}, ranges),
        st.fixed_dictionaries(
            {},
            optional={
                "Range": ranges,
                "If-None-Match": st.sampled_from(_VALIDATORS),
                "If-Modified-Since": st.sampled_from(_VALIDATORS),
                "If-Range": st.sampled_from(_VALIDATORS),
            },
        ),
    )
    return st.builds(
        _Example,
        method=st.sampled_from(_METHODS),
        pieces=st.one_of(
            st.sampled_from(files).map(lambda name: [name]),
            st.lists(piece, min_size=1, max_size=5),
        ),
        separator=st.sampled_from(["/", "/", "/", "\\", "%2f", "%5c", "//"]),
        prefix=st.sampled_from(["/portal/static/"] * 4 + ["/portal/static", "/portal/"]),
        headers=headers,
    )


def _encode(text: str) -> bytes:
    """The path as a client might put it on the wire: ASCII as is, the rest percent-encoded
    UTF-8 (a NUL is sent raw: the server must refuse it)."""
    out = bytearray()
    for ch in text:
        if ch == " ":
            out += b"%20"
        elif ord(ch) < 128:
            out += ch.encode()
        else:
            out += "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")).encode()
    return bytes(out)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def _slices(raw: Raw, files: dict[str, bytes]) -> str | None:
    """What is wrong with a 206 (None: every part is a slice of one static file)."""
    ctype = raw.headers.get("content-type", "")
    parts: list[tuple[str, bytes]] = []
    if ctype.startswith("multipart/byteranges"):
        boundary = ctype.partition("boundary=")[2].strip('"').encode()
        for chunk in raw.body.split(b"--" + boundary)[1:]:
            if chunk.startswith(b"--"):
                break
            head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
            found = re.search(rb"content-range: *([^\r\n]+)", head, re.I)
            parts.append((found.group(1).decode() if found else "", data.removesuffix(b"\r\n")))
    else:
        parts.append((raw.headers.get("content-range", ""), raw.body))
    if not parts:
        return "a 206 with no parts"
    for crange, data in parts:
        m = _CONTENT_RANGE.fullmatch(crange.strip())
        if m is None:
            return f"a part without a Content-Range ({crange!r})"
        start, end, total = (int(g) for g in m.groups())
        sources = [c for c in files.values() if len(c) == total and c[start : end + 1] == data]
        if not sources:
            return f"part {crange} is no static file's bytes"
    return None


def _served(target: StaticTarget, key: str, where: str, raw: Raw, stats: StaticStats) -> str | None:
    """What is wrong with a 200's body (None: a static file's whole content); its headers
    are checked too."""
    served = [n for n, c in target.files.items() if c == raw.body]
    if not served:
        return "a 200 whose body is no static file"
    name = served[0]
    stats.covered.add(f"GET /static/{name}")
    stats.succeeded.add(f"GET /static/{name}")
    ctype = raw.headers.get("content-type", "").split(";")[0].strip()
    length = raw.headers.get("content-length")
    if ctype != target.content_type(name) or length != str(len(raw.body)):
        stats.bad_headers += 1
        stats.record("bad-headers", key, 200, f"{where}\n{ctype} {length} for {name}")
    return None


def _check(target: StaticTarget, ex: _Example, stats: StaticStats) -> None:
    path = ex.separator.join(ex.pieces)
    wire = _encode(ex.prefix + path.lstrip("/" if ex.prefix.endswith("/") else ""))
    kind = "traversal" if any(p not in target.files for p in ex.pieces) else "file"
    kind += "+range" if "Range" in ex.headers else ""
    stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
    before = target.server.digest()
    try:
        raw = raw_request(target.server.port, ex.method, wire, ex.headers)
    except (OSError, UnicodeEncodeError):
        return
    key = f"{ex.method} {kind}"
    where = f"{ex.method} {wire[:300]!r} {ex.headers!r}"[:800]
    if raw.status == 0:
        stats.timed_out(key)
        return
    stats.requests += 1
    stats.statuses[raw.status] = stats.statuses.get(raw.status, 0) + 1
    if kind.startswith("file") and len(ex.pieces) == 1:
        stats.sent.add(f"GET /static/{ex.pieces[0]}")
    if target.server.digest() != before:  # no request to static files changes anything
        stats.state_changes += 1
        stats.record("state-change", key, raw.status, where)
    if raw.status >= 500:
        stats.server_errors += 1
        stats.record("server-error", key, raw.status, f"{where}\n{raw.body[:600]!r}")
    if looks_like_traceback(raw.body.decode("utf-8", "replace")):
        stats.bad_error_bodies += 1
        stats.record("bad-error-body", key, raw.status, f"{where}\n{raw.body[:600]!r}")
    leak = next((name for name, s in target.secrets.items() if s in raw.body), None)
    if leak is None and ex.method == "HEAD" and raw.status < 400 and raw.body:
        leak = f"a body with a HEAD {raw.status}"
    elif leak is None and raw.status == 200 and ex.method != "HEAD":
        leak = _served(target, key, where, raw, stats)
    elif leak is None and raw.status == 206 and ex.method != "HEAD":
        leak = _slices(raw, target.files)
    elif leak is None and raw.status == 304 and raw.body:
        leak = "a body with a 304"
    if leak is not None:
        stats.leaks += 1
        stats.record("leak", key, raw.status, f"{where}\n{leak}\n{raw.body[:300]!r}")


def fuzz_static(
    target: StaticTarget,
    seconds: float,
    *,
    seed: int = 0,
    examples_per_round: int = 50,
    rounds: int | None = None,
) -> StaticStats:
    """Fuzz the static files until `seconds` have passed (at least one round), or for `rounds`
    rounds exactly when given."""
    stats = StaticStats()
    stats.operations = {f"GET /static/{name}" for name in target.files}
    rng = random.Random(seed)
    names = list(target.files)

    def body(ex: _Example) -> None:
        _check(target, ex, stats)

    test = repeat(examples_per_round, _examples(names), body)
    run_rounds([test], rng, seconds, rounds)
    return stats
