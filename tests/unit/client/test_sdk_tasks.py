"""SDK: SSE parsing, watch_task and wait_task."""

from __future__ import annotations

import json

import httpx
import pytest
from cellplane_fake_api import Failure, FakeApi
from hypothesis import given
from hypothesis import strategies as st

from cellplane.client import (
    CellplaneConnectionError,
    CellplaneTimeoutError,
    Client,
    ServerSentEvent,
    iter_sse,
)


def test_sse_parser_follows_the_spec_rules() -> None:
    text = (
        ": keep-alive\r\n"
        "\r\n"
        "event: task\r\n"
        "id: 7\r\n"
        'data: {"a":\r\n'
        "data:1}\r\n"
        "\r\n"
        "retry: 100\n"
        "\n"
        "data: plain\n"
        "unknown: field\n"
        "\n"
        "event: last\n"
        "data: no blank line at the end"
    )
    events = list(iter_sse(text.splitlines(keepends=True)))
    assert events == [
        ServerSentEvent("task", '{"a":\n1}', "7"),
        ServerSentEvent("message", "plain", "7"),
        ServerSentEvent("last", "no blank line at the end", "7"),
    ]


_field_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="\r\n\x85"),
    max_size=20,
)


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z]{1,8}", fullmatch=True),
            st.lists(_field_text, min_size=1, max_size=4),
        ),
        max_size=6,
    )
)
def test_sse_round_trip(events: list[tuple[str, list[str]]]) -> None:
    lines: list[str] = [": hello"]
    for name, data_lines in events:
        lines.append(f"event: {name}")
        lines += [f"data: {d}" for d in data_lines]
        lines.append("")
    parsed = list(iter_sse(lines))
    assert [(e.event, e.data) for e in parsed] == [(n, "\n".join(d)) for n, d in events]


def test_watch_task_yields_each_change_until_terminal(fake: FakeApi, client: Client) -> None:
    task = client.create_cell("default", "web", "busybox")
    states = [t["state"] for t in client.watch_task(task["id"])]
    assert states[0] == "QUEUED"
    assert states[-1] == "COMPLETED"
    assert states.count("COMPLETED") == 1
    assert fake.requests[-1].headers["Accept"] == "text/event-stream"
    final = client.wait_task(task["id"])
    assert [s["state"] for s in final["steps"]] == ["COMPLETED"] * 5


def test_wait_task_returns_a_failed_task(client: Client) -> None:
    task = client.create_cell("default", "web", "missing")
    final = client.wait_task(task["id"])
    assert final["state"] == "ERROR"
    assert "image not found" in final["error"]
    assert [s["state"] for s in final["steps"]][1:3] == ["ERROR", "SKIPPED"]


def test_watch_task_recovers_from_a_cut_stream(fake: FakeApi, client: Client) -> None:
    task = client.create_cell("default", "web", "busybox")
    history = fake.task_history[task["id"]]
    fake.stream_cut = 2
    watched = client.watch_task(task["id"])
    assert [next(watched)["state"] for _ in range(2)] == ["QUEUED", "STARTED"]
    # The task moves on while the client is disconnected.
    fake.stream_cut = None
    rest = list(watched)
    assert rest[-1] == history[-1]
    assert any(r.url.path == f"/v1/tasks/{task['id']}" for r in fake.requests)


def test_watch_task_survives_connection_errors(fake: FakeApi, client: Client) -> None:
    task = client.create_cell("default", "web", "busybox")
    fake.fail_next = [Failure(error=httpx.ReadError), Failure(error=httpx.ReadError)]
    assert client.wait_task(task["id"])["state"] == "COMPLETED"


def test_watch_task_gives_up_after_repeated_failures(fake: FakeApi) -> None:
    with Client("http://x", fake.token, transport=fake.transport(), retries=1, backoff=0) as c:
        task = c.create_cell("default", "web", "busybox")
        fake.fail_next = [Failure(error=httpx.ReadError) for _ in range(20)]
        with pytest.raises(CellplaneConnectionError):
            c.wait_task(task["id"])


def test_wait_task_times_out_on_a_stuck_task(fake: FakeApi) -> None:
    with Client("http://x", fake.token, transport=fake.transport(), backoff=0.01) as c:
        task = c.create_cell("default", "web", "busybox")
        fake.stream_cut = 2  # the task never gets past STARTED
        with pytest.raises(CellplaneTimeoutError) as info:
            c.wait_task(task["id"], timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert task["id"] in str(info.value)


def test_watch_task_ignores_other_events_and_bad_data() -> None:
    done = {"id": "tsk-1", "state": "COMPLETED", "steps": []}
    stream = (
        "event: ping\ndata: {}\n\n"
        "event: task\ndata: not json\n\n"
        f"event: task\ndata: {json.dumps(done)}\n\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=stream, headers={"Content-Type": "text/event-stream"})

    with Client("http://x", "t", transport=httpx.MockTransport(handler)) as c:
        assert list(c.watch_task("tsk-1")) == [done]
