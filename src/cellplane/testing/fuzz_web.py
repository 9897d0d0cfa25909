"""What the Docker-endpoint and portal fuzzers share (issue 14): their statistics, the request
they send and read (bounded in time and size: streams are read for a moment, then closed), the
traceback check, and Hypothesis strategies for hostile text and JSON.

Both are driven by Hypothesis (not schemathesis: neither surface is in the OpenAPI document),
one `@given` test per operation of the router they fuzz, run round-robin until the time is up,
as `cellplane.testing.fuzz` does for the API.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import update

from cellplane.state.models import Cell, Host
from cellplane.testing.fuzz import FuzzServer

__all__ = [
    "Answer",
    "WebStats",
    "hostile_text",
    "json_values",
    "looks_like_traceback",
    "repeat",
    "running_cell",
    "send",
    "unreachable",
]

#: What a Python traceback or a framework's debug page leaves in an answer.
_TRACEBACK = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+|"
    r"\b(?:sqlalchemy|pydantic_core|aiohttp|starlette)\.[a-z_.]*(?:Error|Exception)\b"
)
#: How long a stream (events, logs, wait, attach, SSE) is read before it is closed.
STREAM_S = 0.3
#: At most this much of an answer is read.
MAX_READ = 256 * 1024


def unreachable(request: httpx.Request) -> httpx.Response:
    """The transport of a client to agents that are not there (a host that is down)."""
    raise httpx.ConnectError("fuzz: no agent on this host", request=request)


def looks_like_traceback(text: str) -> bool:
    return bool(_TRACEBACK.search(text))


@dataclass
class WebStats:
    """The counters of one fuzzed surface (`bad_error_bodies`: errors not in the surface's
    error shape, or with a traceback)."""

    requests: int = 0
    server_errors: int = 0
    bad_error_bodies: int = 0
    state_changes: int = 0
    timeouts: int = 0
    #: Requests the HTTP layer refused before the application saw them (Docker endpoint).
    parser_refusals: int = 0
    covered: set[str] = field(default_factory=set)
    succeeded: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    operations: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def record(self, kind: str, key: str, status: int, detail: str) -> None:
        self.failures.setdefault(f"{kind} {key} {status}", detail[:1500])

    def count(self, key: str, status: int, *, reached: bool = True) -> None:
        """One answer; `reached`: it came from the operation itself (not a sign-in redirect)."""
        self.requests += 1
        self.sent.add(key)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if reached and status not in (401, 403, 404):
            self.covered.add(key)
        if 200 <= status < 400:
            self.succeeded.add(key)

    def timed_out(self, key: str) -> None:
        """No answer's headers in time (a long poll: `wait` on a cell that never runs)."""
        self.requests += 1
        self.timeouts += 1
        self.sent.add(key)
        self.slow.add(key)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "server_errors": self.server_errors,
            "bad_error_bodies": self.bad_error_bodies,
            "state_changes": self.state_changes,
            "operations_covered": len(self.covered),
            "operations_total": len(self.operations),
            "operations_succeeded": len(self.succeeded),
            "timeouts": self.timeouts,
            "parser_refusals": self.parser_refusals,
            "timed_out": sorted(self.slow),
            "not_covered": sorted(self.operations - self.covered),
            "not_sent": sorted(self.operations - self.sent),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": dict(sorted(self.failures.items())),
        }


@dataclass
class Answer:
    status: int  # 0: no answer in time
    headers: httpx.Headers
    body: bytes
    location: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def send(client: httpx.Client, request: httpx.Request, timeout: float = 10.0) -> Answer:
    """Send `request`; read its answer for at most `STREAM_S` once the headers are in (a stream
    is cut there) and `MAX_READ` bytes. Status 0: no headers within `timeout`."""
    try:
        resp = client.send(request, stream=True)
    except httpx.TimeoutException:
        return Answer(0, httpx.Headers(), b"")
    # The body's reads wait at most STREAM_S each (a stream that sends nothing more is cut):
    # the transport reads the request's timeouts when the body is first read, not before.
    timeouts = request.extensions.get("timeout")
    if isinstance(timeouts, dict):
        timeouts["read"] = STREAM_S
    try:
        body = bytearray()
        started = time.monotonic()
        try:
            for chunk in resp.iter_raw():
                body.extend(chunk)
                if len(body) >= MAX_READ or time.monotonic() - started > STREAM_S:
                    break
        except (httpx.ReadTimeout, httpx.RemoteProtocolError):
            pass  # a stream that sent nothing more in time, or a hijacked connection
        return Answer(resp.status_code, resp.headers, bytes(body), resp.headers.get("location", ""))
    finally:
        resp.close()


def repeat(
    examples: int, strategy: st.SearchStrategy[Any], body: Callable[[Any], None]
) -> Callable[[int], None]:
    """A Hypothesis test drawing `examples` values of `strategy` per call, each given to
    `body`; only generation (no shrinking, no database), quiet; called with the seed of its
    draws (the same seed, the same values)."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
    )
    @given(value=strategy)
    def run(value: Any) -> None:
        body(value)

    def call(with_seed: int) -> None:
        seed(with_seed)(run)()

    return call


def run_rounds(
    tests: Sequence[Callable[[int], None]],
    rng: random.Random,
    seconds: float,
    rounds: int | None = None,
) -> None:
    """Call every test once per round (with a seed from `rng`), in a shuffled order, until
    `seconds` have passed (at least one round), or for `rounds` rounds exactly when given."""
    deadline = time.monotonic() + seconds
    done = 0
    while True:
        order = list(range(len(tests)))
        rng.shuffle(order)
        for i in order:
            tests[i](rng.getrandbits(32))
        done += 1
        if (done >= rounds) if rounds is not None else time.monotonic() > deadline:
            return


def hostile_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text people and attackers send: plain names, path tricks, control characters, unicode,
    very long, empty."""
    return st.one_of(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        st.sampled_from(
            [
                "",
                " ",
                "..",
                "../../etc/passwd",
                "a/b",
                "%00",
                "\x00",
                "null",
                "-1",
                "0",
                "9" * 30,
                "true",
                "{}",
                "[]",
                "x" * 5000,
                "<script>alert(1)</script>",
                "'; drop table cells; --",
                "\u202e\ufeff",
                "\ud7ff",
            ]
        ),
        st.text(max_size=max_size),
    )


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, nested."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(1 << 70), max_value=1 << 70),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(hostile_text(12), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def running_cell(s: FuzzServer) -> str:
    """A cell as the agent leaves a running one (its container on the world's host, whose
    agent is not there): the routes that call the agent (logs, exec, attach, stats, top,
    archive, network connect) get as far as the call."""
    body = {"name": "fuzz-running", "image": "host", "command": ["sleep", "1"], "cpu": 0.1}
    cell_id: str = s._call("POST", "/v1/projects/default/cells", 202, json=body)["entity"]["id"]
    with s.svc.db.session() as db:
        db.execute(
            update(Host)
            .where(Host.id == s.ids["host_id"][0])
            .values(agent_url="http://192.0.2.1:7401")  # TEST-NET-1: never routed
        )
        db.execute(
            update(Cell)
            .where(Cell.id == cell_id)
            .values(
                state="RUNNING",
                host_id=s.ids["host_id"][0],
                container_id="f" * 64,
                address="10.88.0.9",
            )
        )
    return cell_id
