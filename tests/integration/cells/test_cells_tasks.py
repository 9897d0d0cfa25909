"""Tasks of cell operations: 202 + Location, steps, the SSE stream, Idempotency-Key."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from cellplane.client import CellplaneTimeoutError, Client, iter_sse
from cellplane.drivers.podman import PodmanDriver

from .conftest import IMAGE, SLEEP, SMALL, Cells, assert_problem, finish, unique

CREATE_STEPS = ["SCHEDULE", "PREPARE_IMAGE", "CREATE", "START", "RUNNING"]


def _body(name: str, **extra: Any) -> bytes:
    return json.dumps({"name": name, "image": IMAGE, "command": SLEEP, **SMALL, **extra}).encode()


def _names(client: Client) -> list[str]:
    return sorted(c["name"] for c in client.iter_cells("default"))


@pytest.mark.integration
def test_create_answers_202_with_location_and_all_steps_complete(
    api: httpx.Client, client: Client, cells: Cells
) -> None:
    name = unique("task")
    resp = api.post(
        "/v1/projects/default/cells",
        content=_body(name),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 202, resp.text
    task = resp.json()
    cells.created.append(task["entity"]["id"])
    assert resp.headers["location"] == f"/v1/tasks/{task['id']}"
    assert task["kind"] == "CREATE_CELL"
    assert task["entity"]["kind"] == "cell" and task["entity"]["id"].startswith("cel-")
    assert task["state"] in ("QUEUED", "STARTED", "COMPLETED"), task
    assert [s["name"] for s in task["steps"]] == CREATE_STEPS

    # The Location resolves to the same task.
    located = api.get(resp.headers["location"])
    assert located.status_code == 200 and located.json()["id"] == task["id"]

    done = finish(client, task["id"])
    assert done["state"] == "COMPLETED", done
    assert done["progress"] == 100, done
    assert done["error"] is None, done
    assert [(s["name"], s["state"]) for s in done["steps"]] == [
        (n, "COMPLETED") for n in CREATE_STEPS
    ]
    assert all(s["finished_at"] for s in done["steps"]), done["steps"]
    assert done["finished_at"], done
    cell = client.get_cell(task["entity"]["id"])
    assert cell["state"] == "RUNNING" and cell["name"] == name, cell


@pytest.mark.integration
def test_task_event_stream_ends_in_a_terminal_state(
    api: httpx.Client, client: Client, cells: Cells
) -> None:
    _, task = cells.submit("sse")
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    with api.stream(
        "GET", f"/v1/tasks/{task['id']}/events", headers={"Accept": "text/event-stream"}
    ) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for event in iter_sse(resp.iter_lines()):
            assert event.event == "task", event
            events.append(json.loads(event.data))
            assert time.monotonic() < deadline, "the stream did not end within 60 s"
    # The stream ended by itself, after a terminal state.
    assert events, "no task events"
    assert all(e["id"] == task["id"] for e in events)
    assert events[-1]["state"] == "COMPLETED", events[-1]
    assert all(e["state"] not in ("COMPLETED", "ERROR") for e in events[:-1]), events
    # Progress never goes backwards.
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress), progress


@pytest.mark.integration
def test_idempotency_key_same_request_twice_gives_one_cell(
    api: httpx.Client, client: Client, cells: Cells
) -> None:
    name = unique("idem")
    key = f"idem-{uuid.uuid4().hex}"
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    body = _body(name)
    first = api.post("/v1/projects/default/cells", content=body, headers=headers)
    assert first.status_code == 202, first.text
    cells.created.append(first.json()["entity"]["id"])
    second = api.post("/v1/projects/default/cells", content=body, headers=headers)
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["entity"] == first.json()["entity"]
    assert second.headers["location"] == first.headers["location"]
    matching = [c for c in client.iter_cells("default") if c["name"] == name]
    assert len(matching) == 1, matching
    assert finish(client, first.json()["id"])["state"] == "COMPLETED"

    # The same key with a different body: 422 idempotency-mismatch, nothing created.
    before = _names(client)
    other = unique("idem-other")
    third = api.post("/v1/projects/default/cells", content=_body(other), headers=headers)
    problem = assert_problem(third, 422, "idempotency-mismatch")
    assert problem["detail"], problem
    assert _names(client) == before
    assert client.find_cell("default", other) is None
    # And the first cell is untouched.
    assert [c["name"] for c in client.iter_cells("default") if c["name"] == name] == [name]


@pytest.mark.integration
def test_sdk_wait_task_honours_its_timeout(
    client: Client, cells: Cells, engine: PodmanDriver
) -> None:
    """A task that runs longer than the wait: wait_task must give up after its timeout.

    The STOP of a cell that ignores SIGTERM, with a 60 s grace period, stays STARTED for a minute;
    the server's SSE stream sends keep-alive comments every 5 s meanwhile.
    """
    cell = cells.run("slowstop", ["sh", "-c", "sleep 600"])
    task = client.stop_cell(cell["id"], timeout=60)
    outcome: dict[str, Any] = {}

    def wait() -> None:
        started = time.monotonic()
        try:
            outcome["task"] = client.wait_task(task["id"], timeout=17)
        except CellplaneTimeoutError as e:
            outcome["timeout"] = e
        except Exception as e:  # reported below
            outcome["error"] = e
        outcome["elapsed"] = time.monotonic() - started

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    waiter.join(35)
    try:
        assert not waiter.is_alive(), "wait_task(timeout=17) still waiting after 35 s"
        assert "error" not in outcome, outcome
        assert "timeout" in outcome, f"wait_task returned before the task ended: {outcome}"
        assert outcome["elapsed"] < 27, outcome
    finally:
        # Let the slow stop finish now so the cell can be deleted.
        engine.kill(cell["container_id"])
        finish(client, task["id"])
