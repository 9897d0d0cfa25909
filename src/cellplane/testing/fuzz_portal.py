"""Hypothesis over every page and form of the portal (issue 14).

`PortalTarget` mounts the portal on a `FuzzServer` (as the server does, at `/portal`) and signs
callers in by giving each a portal session holding a real access token of the default tenant (the
same session the sign-in flow leaves; the flow itself is fuzzed as its own routes): the `admin`
user (system admin), a tenant admin, a project member, a project viewer; and an anonymous caller.

The operations are the portal's own routes (each method of each `Route` of `create_portal`,
HEAD aside): nothing to keep in step by hand. The fields of each form are what the portal's pages
show: every page is read once as the admin, and the names of the inputs, selects, textareas and
buttons of each form are kept under the route its `action` (or `hx-post`) matches, with the values
the page offered; a form no page shows gets a generic set of names. Each example draws the caller,
the path's ids (the world's or hostile text), a query string, and for a POST the form (any subset
of its fields, each a value the page offered or hostile text), urlencoded or multipart (with a file
for a file input), and a CSRF token: the session's (in the form or the `X-CSRF-Token` header),
none, a wrong one, or the right one from a foreign `Origin`. Checks:

* no 5xx (`server_errors`); no traceback in any answer (`bad_error_bodies`);
* a POST without the session's CSRF token, from another site or anonymous is refused (403, or
  the anonymous caller sent to sign in) and changes nothing; a refused request (4xx) and a GET
  change nothing (`state_changes`: the database digest of `FuzzServer`).
"""

from __future__ import annotations

import asyncio
import html
import io
import random
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx
from hypothesis import strategies as st
from starlette.routing import Route

from cellplane.portal import install
from cellplane.portal.web import COOKIE, Portal
from cellplane.state.identity_models import User
from cellplane.state.models import Tenant
from cellplane.testing.fuzz import FuzzServer, Started
from cellplane.testing.fuzz_web import (
    Answer,
    WebStats,
    hostile_text,
    looks_like_traceback,
    repeat,
    run_rounds,
    running_cell,
    send,
    unreachable,
)

__all__ = ["PortalTarget", "fuzz_portal"]

CALLERS = ("admin", "tenant-admin", "project-member", "project-viewer", "anonymous")
_PARAM = re.compile(r"\{(\w+)\}")
_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_HX_POST = re.compile(r"<(?:button|a|div|tr|select|input)\b[^>]*hx-post=\"([^\"]+)\"", re.I)
_ACTION = re.compile(r"\baction=\"([^\"]*)\"", re.I)
_FIELD = re.compile(r"<(input|select|textarea|button)\b([^>]*)>", re.I)
_NAME = re.compile(r"\bname=\"([^\"]+)\"", re.I)
_VALUE = re.compile(r"\bvalue=\"([^\"]*)\"", re.I)
_OPTION = re.compile(r"<option\b[^>]*value=\"([^\"]*)\"", re.I)
_TYPE_FILE = re.compile(r"\btype=\"file\"", re.I)
_METHOD_GET = re.compile(r"\bmethod=\"get\"", re.I)
_HREF = re.compile(r"\bhref=\"(/portal[^\"]*\?[^\"]*)\"", re.I)
#: Query parameters of the sign-in flow (no page links to these).
_QUERY = ("next", "tenant", "code", "state", "error", "error_description")
#: Names a form nobody could find gets (and every form may get, as extra fields).
_GENERIC = ("name", "action", "project", "tenant", "user", "role", "count", "spec", "state")
#: Path parameters that, with these values, would end the run's world.
_PROTECTED = {"tenant": {"default"}, "project": {"default"}}


@dataclass
class _Form:
    fields: dict[str, set[str]] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 5
        tf.addfile(info, io.BytesIO(b"fuzz\n"))
    return out.getvalue()


class PortalTarget(Started):
    """The portal of `server` and one signed-in session per caller (re-made when a request
    ends it, `logout` for one)."""

    def __init__(self, server: FuzzServer) -> None:
        self.server = server
        self.base = server.url + "/portal"
        install(server.app)
        mount = next(r for r in server.app.routes if getattr(r, "path", "") == "/portal")
        self.app = mount.app.app()  # type: ignore[attr-defined]
        self.portal: Portal = self.app.state.portal
        self.tokens: dict[str, str] = {}
        self.sessions: dict[str, str] = {}
        self.forms: dict[str, _Form] = {}
        #: Query parameters the pages use (their links, their filter forms), with their values.
        self.query: dict[str, set[str]] = {name: set() for name in _QUERY}
        self.ids: dict[str, list[str]] = {}
        self.routes = [r for r in self.app.routes if isinstance(r, Route)]
        self._agent_client: httpx.AsyncClient | None = None

    def start(self) -> None:
        s = self.server
        with s.svc.db.reader() as db:
            tenant = db.query(Tenant).filter(Tenant.name == "default").one()
            admin = db.query(User).filter(User.name == "admin", User.tenant_id == tenant.id).one()
            admin_id = admin.id
        self.tokens["admin"] = s._token(admin_id)["Authorization"].removeprefix("Bearer ")
        for role in ("tenant-admin", "project-member", "project-viewer"):
            self.tokens[role] = s.headers[role]["Authorization"].removeprefix("Bearer ")
        self.ids = {k: list(v) for k, v in s.ids.items()}
        self.ids["cell_id"].append(running_cell(s))
        # The portal's pages name projects by name: the crawl takes each list's first.
        self.ids["project"] = ["default", *(p for p in self.ids["project"] if p != "default")]
        self.ids["group"] = ["fuzz-group", *self.ids.get("group", [])]
        # The cells' host has no agent: the portal's client to the agents fails at once (logs).
        self._agent_client = s.app.state.agent_client
        s.app.state.agent_client = httpx.AsyncClient(transport=httpx.MockTransport(unreachable))
        self._crawl()

    def close(self) -> None:
        if self._agent_client is not None:
            mock, self.server.app.state.agent_client = (
                self.server.app.state.agent_client,
                self._agent_client,
            )
            self._agent_client = None
            loop = self.server.svc.notifier._loop
            if loop is not None and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(mock.aclose(), loop).result(30)

    def session(self, caller: str) -> tuple[str, str]:
        """(session id, its CSRF token) of `caller`'s signed-in session."""
        sid = self.sessions.get(caller)
        found = self.portal.store.get(sid) if sid else None
        if found is None:
            found = self.portal.store.new()
            found.tenant = "default"
            found.user = caller
            found.access_token = self.tokens[caller]
            found.refresh_token = "unused"
            found.expires_at = time.time() + 86400
            self.portal.store.save(found)
            self.sessions[caller] = found.id
        return found.id, found.csrf

    def cookies(self, caller: str) -> dict[str, str]:
        if caller == "anonymous":
            return {}
        return {COOKIE: self.session(caller)[0]}

    def route_of(self, path: str, method: str) -> Route | None:
        for route in self.routes:
            if method in (route.methods or ()) and route.path_regex.match(path):
                return route
        return None

    def _crawl(self) -> None:
        """Read every page as the admin; keep each form's fields under its route."""
        with httpx.Client(timeout=10) as client:
            for route in self.routes:
                if "GET" not in (route.methods or ()):
                    continue
                for path in self._paths(route.path):
                    req = client.build_request(
                        "GET", self.server.url + "/portal" + path, cookies=self.cookies("admin")
                    )
                    self._forms_of(send(client, req).text)

    def _paths(self, template: str) -> Iterator[str]:
        names = _PARAM.findall(template)
        if not names:
            yield template
            return
        path = template
        for name in names:
            known = self.ids.get(name) or ["x"]
            path = path.replace("{" + name + "}", known[0])
        yield path

    def _forms_of(self, page: str) -> None:
        for attrs, inner in _FORM.findall(page):
            if _METHOD_GET.search(attrs):  # a filter form: its fields are query parameters
                for _tag, field_attrs in _FIELD.findall(inner):
                    if found := _NAME.search(field_attrs):
                        self._query(html.unescape(found.group(1)), _VALUE.search(field_attrs))
                continue
            action = _ACTION.search(attrs)
            if action:
                self._add_form(html.unescape(action.group(1)), inner)
        for href in _HREF.findall(page):
            for key, value in parse_qsl(html.unescape(href).partition("?")[2]):
                self.query.setdefault(key, set()).add(value)
        for target in _HX_POST.findall(page):
            self._add_form(html.unescape(target), "")

    def _query(self, name: str, value: re.Match[str] | None) -> None:
        values = self.query.setdefault(name, set())
        if value:
            values.add(html.unescape(value.group(1)))

    def _add_form(self, action: str, inner: str) -> None:
        path = action.split("?")[0].removeprefix(self.server.url)
        if not path.startswith("/portal"):
            return
        route = self.route_of(path.removeprefix("/portal"), "POST")
        if route is None:
            return
        form = self.forms.setdefault(route.path, _Form())
        for _tag, attrs in _FIELD.findall(inner):
            name = _NAME.search(attrs)
            if not name or name.group(1) == "csrf":
                continue
            key = html.unescape(name.group(1))
            if _TYPE_FILE.search(attrs):
                form.files.add(key)
                continue
            values = form.fields.setdefault(key, set())
            value = _VALUE.search(attrs)
            if value:
                values.add(html.unescape(value.group(1)))
        for select, options in _select_options(inner):
            form.fields.setdefault(select, set()).update(options)


def _select_options(inner: str) -> Iterator[tuple[str, set[str]]]:
    for m in re.finditer(r"<select\b([^>]*)>(.*?)</select>", inner, re.S | re.I):
        name = _NAME.search(m.group(1))
        if name:
            yield (
                html.unescape(name.group(1)),
                {html.unescape(v) for v in _OPTION.findall(m.group(2))},
            )


@dataclass
class _Example:
    caller: str
    picks: list[tuple[bool, int, str]]
    query: dict[str, str]
    form: dict[str, str]
    csrf: str  # "form", "header", "none", "wrong", "foreign"
    multipart: bool
    file: bytes
    oversized: bool


def _examples(
    params: int, form: _Form | None, query: dict[str, set[str]]
) -> st.SearchStrategy[_Example]:
    pick = st.tuples(st.booleans(), st.integers(0, 1 << 20), hostile_text())
    fields: dict[str, st.SearchStrategy[str]] = {name: hostile_text() for name in _GENERIC}
    for name, values in (form.fields if form else {}).items():
        offered = sorted(values)
        fields[name] = (
            st.one_of(st.sampled_from(offered), st.sampled_from(offered), hostile_text())
            if offered
            else hostile_text()
        )
    return st.builds(
        _Example,
        caller=st.sampled_from(CALLERS),
        picks=st.lists(pick, min_size=params, max_size=params),
        query=st.fixed_dictionaries(
            {},
            optional={
                name: st.one_of(st.sampled_from(sorted(values)), hostile_text())
                if values
                else hostile_text()
                for name, values in sorted(query.items())
            },
        ),
        form=st.fixed_dictionaries({}, optional=fields),
        csrf=st.sampled_from(["form", "form", "form", "header", "none", "wrong", "foreign"]),
        multipart=st.booleans() if form and form.files else st.just(False),
        file=st.one_of(st.just(_tar()), st.binary(max_size=300)),
        oversized=st.integers(0, 15).map(lambda n: n == 0),
    )


def _request(
    target: PortalTarget, client: httpx.Client, method: str, template: str, ex: _Example
) -> httpx.Request:
    path = template
    for i, name in enumerate(_PARAM.findall(template)):
        known_ok, index, text = ex.picks[i]
        known = [
            v
            for v in target.ids.get(name, [])
            if not (path.endswith("/delete") and v in _PROTECTED.get(name, ()))
        ]
        value = known[index % len(known)] if known and known_ok else text
        if value in _PROTECTED.get(name, ()) and template.endswith("/delete"):
            value = "not-" + value
        encoded = httpx.URL(path="/" + value).raw_path.decode("ascii")[1:] if value else value
        path = path.replace("{" + name + "}", encoded, 1)
    headers: dict[str, str] = {}
    url = target.base + path
    cookies = target.cookies(ex.caller)
    if method == "GET":
        return client.build_request(method, url, params=ex.query, headers=headers, cookies=cookies)
    data = dict(ex.form)
    if ex.oversized:
        data["name"] = "x" * (3 << 20)
    token = target.session(ex.caller)[1] if ex.caller != "anonymous" else "anonymous"
    if ex.csrf == "form" or ex.csrf == "foreign":
        data["csrf"] = token
    elif ex.csrf == "header":
        headers["X-CSRF-Token"] = token
    elif ex.csrf == "wrong":
        data["csrf"] = ("1" if token.startswith("0") else "0") + token[1:]  # never the token
    if ex.csrf == "foreign":
        headers["Origin"] = "https://evil.example"
    form = target.forms.get(template)
    files = None
    if ex.multipart and form and form.files:
        files = {name: ("upload.tar", ex.file, "application/x-tar") for name in form.files}
    return client.build_request(
        method, url, params=ex.query, data=data, files=files, headers=headers, cookies=cookies
    )


def _refusal_expected(method: str, ex: _Example) -> bool:
    return method == "POST" and (
        ex.caller == "anonymous" or ex.csrf in ("none", "wrong", "foreign")
    )


def _refused(answer: Answer) -> bool:
    """Refused: an error page (403 for the CSRF check; a lookup or validation that fails first
    is a refusal too), or the anonymous caller sent to sign in."""
    return answer.status >= 400 or "/portal/login" in answer.location


def _check(
    target: PortalTarget,
    client: httpx.Client,
    key: str,
    method: str,
    template: str,
    ex: _Example,
    stats: WebStats,
) -> None:
    server = target.server
    try:
        request = _request(target, client, method, template, ex)
    except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
        return
    before = server.digest()
    try:
        answer = send(client, request)
    except httpx.LocalProtocolError:
        return
    status = answer.status
    if status == 0:
        stats.timed_out(key)
        return
    signed_out = status == 303 and "/portal/login" in answer.location
    stats.count(key, status, reached=not signed_out)
    where = f"{ex.caller} csrf={ex.csrf}: {method} {request.url} form={ex.form!r}"[:900]
    if status >= 500:
        stats.server_errors += 1
        stats.record("server-error", key, status, f"{where}\n{answer.text[:800]}")
    if looks_like_traceback(answer.text):
        stats.bad_error_bodies += 1
        stats.record("traceback", key, status, f"{where}\n{answer.text[:800]}")
    expected = _refusal_expected(method, ex) and template not in ("/login", "/logout")
    if expected and not _refused(answer):
        stats.state_changes += 1
        stats.record("not-refused", key, status, f"{where}\n{answer.location}")
    if (expected or method == "GET" or 400 <= status < 500) and server.digest() != before:
        stats.state_changes += 1
        stats.record("state-change", key, status, f"{where}\n{answer.text[:600]}")


def operations(target: PortalTarget) -> list[tuple[str, str]]:
    ops = set()
    for route in target.routes:
        for method in route.methods or ():
            if method != "HEAD":
                ops.add((method, route.path))
    return sorted(ops)


def fuzz_portal(
    target: PortalTarget,
    seconds: float,
    *,
    seed: int = 0,
    examples_per_round: int = 6,
    rounds: int | None = None,
) -> WebStats:
    """Fuzz every page and form of `target` until `seconds` have passed (at least one round), or
    for `rounds` rounds exactly when given (the suite: the same work on any machine)."""
    stats = WebStats()
    ops = operations(target)
    stats.operations = {f"{m} {p}" for m, p in ops}
    rng = random.Random(seed)
    with httpx.Client(timeout=httpx.Timeout(10.0, read=2.0)) as client:
        tests = []
        for method, path in ops:
            key = f"{method} {path}"

            def body(ex: _Example, key: str = key, method: str = method, path: str = path) -> None:
                _check(target, client, key, method, path, ex, stats)

            form = target.forms.get(path) if method == "POST" else None
            strategy = _examples(len(_PARAM.findall(path)), form, target.query)
            tests.append(repeat(examples_per_round, strategy, body))
        run_rounds(tests, rng, seconds, rounds)
    return stats
