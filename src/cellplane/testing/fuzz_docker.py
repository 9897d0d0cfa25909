"""Hypothesis over every route of a project's Docker-compatible endpoint (issue 14).

`DockerTarget` serves the endpoint of the `FuzzServer`'s default project (its row made through
the REST API) with the real handlers (`dockerapi.server.make_app`) on the server's own event loop,
as the server's listeners do, on a free loopback port and over plain HTTP (TLS is not what is
fuzzed; callers present bearer tokens). The cells' host is the fuzz server's registered host with
no agent behind it: the client to the agents fails to connect at once, as to a host that is down,
and no engine is ever involved. The operator allows one registry (`registry.fuzz.invalid`), so
pulls and pushes get past the registry check to the (absent) agent.

`fuzz_docker` walks the operations of the endpoint's router (each method and path of
`make_app`'s table, with and without the `/v{version}` prefix): nothing to keep in step by hand.
Each example draws the caller (the five of `cellplane.testing.fuzz`, and a garbage token), the
path's ids (the world's and what succeeded requests made, or hostile text), a query string of
Docker's parameter names with valid and invalid values, `Content-Type` and `X-Registry-Auth`
headers, and a body (none, any JSON, a container-create-like object, bytes that are not UTF-8, a
small tar, an oversized JSON). Checks:

* no 5xx but 501 (which the endpoint answers for features it declares unsupported);
* every error (4xx, 5xx, but HEAD's) is Docker's `{"message": "..."}` as `application/json`, and
  no answer carries a traceback (`bad_error_bodies`);
* a refused request (4xx) changed nothing: the database digest of `FuzzServer` (`state_changes`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import re
import tarfile
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web
from hypothesis import strategies as st

from cellplane.dockerapi.base import EndpointContext
from cellplane.dockerapi.server import make_app
from cellplane.registries import Registry
from cellplane.testing.fuzz import CALLERS, FuzzServer, Started
from cellplane.testing.fuzz_web import (
    Answer,
    WebStats,
    hostile_text,
    json_values,
    looks_like_traceback,
    repeat,
    run_rounds,
    running_cell,
    send,
    unreachable,
)
from cellplane.testing.harness import free_port

__all__ = ["DockerTarget", "fuzz_docker", "operations"]

_PARAM = re.compile(r"\{(\w+)")
_PARAM_FULL = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_VERSION_PREFIX = "/v{version}"
_REGISTRY = "registry.fuzz.invalid"
_QUERY_NAMES = (
    "all", "filters", "force", "v", "t", "signal", "name", "fromImage", "fromSrc", "tag", "repo",
    "follow", "stdout", "stderr", "tail", "since", "until", "timestamps", "condition", "stream",
    "size", "platform", "link", "path", "noOverwriteDirToSubContent", "h", "w", "ps_args",
    "detachKeys", "logs", "stdin", "changes", "names", "dockerfile", "buildargs", "labels",
    "one-shot", "noprune", "digests", "quiet", "pull", "rm", "forcerm", "memory", "cpuquota",
)  # fmt: skip
_CALLERS = (*CALLERS, "garbage-token")


def operations(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route of an endpoint app, without the version prefix."""
    ops: set[tuple[str, str]] = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path = resource.canonical
        if path.startswith(_VERSION_PREFIX):
            path = path.removeprefix(_VERSION_PREFIX)
        ops.add((route.method, path))
    return sorted(ops)


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in (("Dockerfile", b"FROM host\nRUN true\n"), ("f.txt", b"hello")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


_TAR = _tar()
#: A body every create route takes (a container, a volume, a network, an exec): most drawn
#: bodies are refused, these get past validation to the state.
_PLAUSIBLE = {"Image": "host", "Cmd": ["sleep", "1"], "Name": "fuzz", "Driver": "local"}


def _container_body() -> st.SearchStrategy[dict[str, Any]]:
    text = hostile_text()
    host_config = st.fixed_dictionaries(
        {},
        optional={
            "Memory": st.integers(-5, 1 << 40),
            "NanoCpus": st.integers(-5, 1 << 40),
            "PortBindings": json_values(6),
            "Binds": st.lists(text, max_size=3),
            "NetworkMode": text,
            "RestartPolicy": json_values(4),
            "Privileged": st.booleans(),
            "CapAdd": st.lists(text, max_size=3),
            "Mounts": json_values(6),
            "ReadonlyRootfs": st.booleans(),
            "AutoRemove": st.booleans(),
        },
    )
    return st.fixed_dictionaries(
        {"Image": st.one_of(st.sampled_from(["host", "fuzz-image", "busybox"]), text)},
        optional={
            "Cmd": st.one_of(st.lists(text, max_size=3), text),
            "Entrypoint": json_values(4),
            "Env": st.lists(text, max_size=3),
            "Labels": st.dictionaries(text, text, max_size=3),
            "HostConfig": st.one_of(host_config, json_values(4)),
            "ExposedPorts": json_values(4),
            "NetworkingConfig": json_values(6),
            "Tty": st.booleans(),
            "OpenStdin": st.booleans(),
            "User": text,
            "WorkingDir": text,
            "Healthcheck": json_values(6),
            "Name": text,
            "Driver": st.one_of(st.just("local"), text),
            "DriverOpts": json_values(4),
            "AttachStdout": st.booleans(),
            "Detach": st.booleans(),
            "Container": text,
            "EndpointConfig": json_values(4),
        },
    )


def _bodies() -> st.SearchStrategy[tuple[str, bytes | None]]:
    """(what it is, the bytes)."""
    return st.one_of(
        st.just(("none", None)),
        json_values().map(lambda v: ("json", json.dumps(v).encode())),
        _container_body().map(lambda v: ("create", json.dumps(v).encode())),
        st.dictionaries(
            st.sampled_from(["Name", "Labels", "Env", "Tty", "Healthcheck", "HostConfig"]),
            json_values(3),
            max_size=1,
        ).map(lambda extra: ("plausible", json.dumps({**_PLAUSIBLE, **extra}).encode())),
        st.binary(max_size=200).map(lambda b: ("bytes", b)),
        st.just(("not-utf8", b'{"Image": "\xff\xfe\xfa"}')),
        st.just(("tar", _TAR)),
        st.just(("oversized", b'{"Image": "' + b"a" * (3 << 20) + b'"}')),
        st.just(("deep", b"[" * 100_000 + b"]" * 100_000)),
    )


def _query_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["1", "0", "true", "false", "-1", "10", "all", "host", "fuzz-image"]),
        st.just(f"{_REGISTRY}/team/app"),
        st.just("[" * 1200 + "]" * 1200),
        hostile_text(),
        json_values(6).map(json.dumps),
        st.dictionaries(
            st.sampled_from(["label", "name", "id", "dangling", "status", "before", "reference"]),
            st.lists(hostile_text(12), max_size=2),
            max_size=2,
        ).map(json.dumps),
    )


def _registry_auth() -> st.SearchStrategy[str | None]:
    ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
    return st.one_of(
        st.none(),
        ascii_text,
        json_values(6).map(lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()),
        st.just(base64.urlsafe_b64encode(b"[" * 1200 + b"]" * 1200).decode()),
    )


@dataclass
class _Example:
    prefix: str
    caller: str
    picks: list[tuple[bool, int, str]]
    query: dict[str, str]
    content_type: str | None
    registry_auth: str | None
    body: tuple[str, bytes | None]


def _examples(params: int) -> st.SearchStrategy[_Example]:
    pick = st.tuples(st.booleans(), st.integers(0, 1 << 20), hostile_text())
    return st.builds(
        _Example,
        prefix=st.sampled_from(["", "", "", "/v1.41", "/v1.24", "/v1.12", "/v9.99", "/vx"]),
        caller=st.sampled_from(_CALLERS),
        picks=st.lists(pick, min_size=params, max_size=params),
        query=st.dictionaries(st.sampled_from(_QUERY_NAMES), _query_values(), max_size=4),
        content_type=st.sampled_from(
            [
                None,
                "application/json",
                "application/json",
                "text/plain",
                "application/x-tar",
                "application/json; charset=latin-1",
                "application/json; charset=no-such-charset",
                "multipart/form-data; boundary=zz",
                "garbage/\x7f",
            ]
        ),
        registry_auth=_registry_auth(),
        body=_bodies(),
    )


class DockerTarget(Started):
    """The endpoint of `server`'s default project, served until `close()`."""

    def __init__(self, server: FuzzServer) -> None:
        self.server = server
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ids: dict[str, list[str]] = {}
        self.world: dict[str, list[str]] = {}  # the references made before the first round
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.agent = httpx.AsyncClient(transport=httpx.MockTransport(unreachable))

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self.server.svc.notifier._loop
        assert loop is not None, "the fuzz server is not running"
        return loop

    def start(self) -> None:
        s = self.server
        s.svc.registries = (Registry(_REGISTRY, insecure=True),)
        ep = s._call("POST", "/v1/projects/default/docker-endpoints", 201, json={})
        ctx = EndpointContext(
            svc=s.svc,
            authn=s.app.state.authenticator,
            agent=self.agent,
            endpoint_id=ep["id"],
            project_id=s.ids["project"][0],
            project_name="default",
        )
        self.app = make_app(ctx)
        fut = asyncio.run_coroutine_threadsafe(self._serve(self.app), self._loop)
        self._runner = fut.result(30)
        self._tag("fuzz-image", "fuzz", "1")
        cell = s.ids["cell_id"][0]
        running = running_cell(s)
        self.ids = {
            "containers:ref": [cell, "fuzz-cell", "/fuzz-cell", running, "fuzz-running"],
            "images:name": ["host", "fuzz-image", "fuzz:1", f"{_REGISTRY}/team/app:1"],
            "volumes:name": ["fuzz-vol"],
            "networks:ref": ["default", "bridge"],
            "exec:id": [self._exec(running)],
        }
        self.world = {key: list(refs) for key, refs in self.ids.items()}

    def _exec(self, container: str) -> str:
        """An exec instance of the running container, so that the exec routes are reached from
        the first round (not only once an example happened to create one)."""
        with self.plain_client() as client:
            r = client.post(
                f"{self.url}/containers/{container}/exec",
                json={"Cmd": ["true"]},
                headers=self.server.headers["system-admin"],
            )
        if r.status_code != 201:
            raise RuntimeError(f"exec in {container}: {r.status_code} {r.text}")
        return str(r.json()["Id"])

    def plain_client(self) -> httpx.Client:
        """A client to the endpoint, with no identity of its own."""
        return httpx.Client()

    def _tag(self, image: str, repo: str, tag: str) -> None:
        """A second name of the world's image (`fuzz:1`, one of the image ids the examples
        draw), so that more of the drawn names exist: only a system admin may delete or tag
        images, and a name that is not there answers 404."""
        s = self.server
        url = f"{self.url}/images/{image}/tag"
        with self.plain_client() as client:
            r = client.post(
                url, params={"repo": repo, "tag": tag}, headers=s.headers["system-admin"]
            )
        if r.status_code != 201:
            raise RuntimeError(f"tag {image} as {repo}:{tag}: {r.status_code} {r.text}")

    async def _serve(self, app: web.Application) -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner

    def close(self) -> None:
        runner, self._runner = self._runner, None
        loop = self.server.svc.notifier._loop
        if loop is not None and not loop.is_closed():
            calls = [self.agent.aclose()] + ([runner.cleanup()] if runner else [])
            for call in calls:
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(call, loop).result(30)

    def harvest(self, method: str, path: str, answer: Answer) -> None:
        if method != "POST":
            return
        with contextlib.suppress(ValueError):
            body = json.loads(answer.body)
            if not isinstance(body, dict):
                return
            key = {
                "/containers/create": "containers:ref",
                "/containers/{ref}/exec": "exec:id",
                "/networks/create": "networks:ref",
            }.get(path)
            made = body.get("Id")
            if path == "/volumes/create":
                key, made = "volumes:name", body.get("Name")
            if key and isinstance(made, str) and made not in self.ids.setdefault(key, []):
                self.ids[key].append(made)


def _parser_refusal(answer: Answer) -> bool:
    ctype = answer.headers.get("content-type", "")
    return answer.status in (400, 413, 431) and ctype.startswith("text/plain")


def _docker_error_shape(answer: Answer) -> str | None:
    """What is wrong with an error answer, as Docker clients read errors; None if nothing."""
    ctype = answer.headers.get("content-type", "")
    if ctype.split(";")[0].strip() != "application/json":
        return f"error content type {ctype!r}"
    try:
        body = json.loads(answer.body)
    except ValueError:
        return "error body is not JSON"
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return "error body has no string 'message'"
    return None


def _request(
    target: DockerTarget, client: httpx.Client, method: str, path: str, ex: _Example
) -> httpx.Request:
    server = target.server
    segment = path.strip("/").split("/")[0]
    values: dict[str, str] = {}
    for i, name in enumerate(_PARAM.findall(path)):
        known_ok, index, text = ex.picks[i]
        # Half the known references are the world's own (made before the first round), half
        # any made since (a container an example created): what examples created, and which
        # of them are gone by then, does not decide whether a route is reached past its lookup.
        key = f"{segment}:{name}"
        known = (index % 2 and target.ids.get(key)) or target.world.get(key) or []
        value = known[index // 2 % len(known)] if known and known_ok else text
        values[name] = httpx.URL(path="/" + value).raw_path.decode("ascii")[1:] if value else ""

    def fill(m: re.Match[str]) -> str:
        return values[m.group(1)]

    path = _PARAM_FULL.sub(fill, path)
    headers: dict[str, str] = {}
    if ex.caller == "garbage-token":
        headers["Authorization"] = "Bearer not.a.token"
    else:
        headers.update(server.headers[ex.caller])
    if ex.content_type is not None:
        headers["Content-Type"] = ex.content_type
    if ex.registry_auth is not None:
        headers["X-Registry-Auth"] = ex.registry_auth
    _, body = ex.body
    if method in ("GET", "HEAD"):
        body = None
    return client.build_request(
        method,
        target.url + ex.prefix + path,
        params=ex.query,
        headers=headers,
        content=body,
        timeout=httpx.Timeout(10.0, read=2.0),
    )


def _check(
    target: DockerTarget,
    client: httpx.Client,
    key: str,
    method: str,
    path: str,
    ex: _Example,
    stats: WebStats,
) -> None:
    server = target.server
    try:
        request = _request(target, client, method, path, ex)
    except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
        return  # a header or URL no client can send
    before = server.digest()
    try:
        answer = send(client, request)
    except httpx.LocalProtocolError:
        return  # a header no client can send
    status = answer.status
    if status == 0:
        stats.timed_out(key)
        return
    stats.count(key, status)
    if _parser_refusal(answer):
        # aiohttp's HTTP parser refused the request before any handler or middleware saw it
        # (a header value with control characters, a request line over 8 KiB), in plain text
        # as Go's net/http (dockerd) does: not the endpoint's answer, counted apart.
        stats.parser_refusals += 1
        return
    where = f"{ex.caller}: {method} {request.url} body={ex.body[0]} ct={ex.content_type!r}"
    if status >= 500 and status != 501:
        stats.server_errors += 1
        stats.record("server-error", key, status, f"{where}\n{answer.text[:600]}")
    problem = None
    if status >= 400 and method != "HEAD":
        problem = _docker_error_shape(answer)
    if problem is None and looks_like_traceback(answer.text):
        problem = "traceback in the answer"
    if problem:
        stats.bad_error_bodies += 1
        stats.record("bad-error-body", key, status, f"{where}\n{problem}\n{answer.text[:600]}")
    if 400 <= status < 500:
        if server.digest() != before:
            stats.state_changes += 1
            stats.record("state-change", key, status, f"{where}\n{answer.text[:600]}")
    elif status < 300:
        target.harvest(method, path, answer)


def fuzz_docker(
    target: DockerTarget,
    seconds: float,
    *,
    seed: int = 0,
    examples_per_round: int = 6,
    rounds: int | None = None,
) -> WebStats:
    """Fuzz every route of `target` until `seconds` have passed (at least one round), or
    for `rounds` rounds exactly when given (the suite: the same work on any machine)."""
    assert target.app is not None, "the target is not started"
    stats = WebStats()
    ops = operations(target.app)
    stats.operations = {f"{m} {p}" for m, p in ops}
    rng = random.Random(seed)
    with httpx.Client() as client:
        tests = []
        for method, path in ops:
            key = f"{method} {path}"

            def body(ex: _Example, key: str = key, method: str = method, path: str = path) -> None:
                _check(target, client, key, method, path, ex, stats)

            params = len(_PARAM.findall(path))
            tests.append(repeat(examples_per_round, _examples(params), body))
        run_rounds(tests, rng, seconds, rounds)
    return stats
