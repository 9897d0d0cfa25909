"""Crash safety: kill -9 the server mid-burst, kill -9 the agent, restart the whole deployment.

These tests share the session's deployment: surviving them with its state intact is the point.
(A second deployment would also run a second podman engine on this host, and independent engines
pick the same bridge names and subnets; see test_cells_storage_network.py.)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import Deployment

from .conftest import IMAGE, SLEEP, SMALL, Cells, wait_for

BURST = 50


def _post_with_retries(
    d: Deployment, http: httpx.Client, body: bytes, key: str, errors: list[str]
) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            resp = http.post(
                f"{d.url}/v1/projects/default/cells",
                content=body,
                headers={
                    "Authorization": f"Bearer {d.admin_token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                },
            )
            if resp.status_code not in (502, 503, 504):
                return resp
            errors.append(f"{resp.status_code}")
        except httpx.TransportError as e:
            errors.append(type(e).__name__)
        if time.monotonic() > deadline:
            raise AssertionError(f"create {key} not accepted within 60 s: {errors[-5:]}")
        time.sleep(0.2)


def _containers_by_cell(engine: PodmanDriver, ids: list[str]) -> dict[str, list[Any]]:
    return {i: engine.list({"cellplane.cell": i}) for i in ids}


@pytest.mark.integration
def test_server_killed_during_a_burst_of_creates(deployment: Deployment, cells: Cells) -> None:
    d = deployment
    client, engine = cells.c, cells.engine
    batch = uuid.uuid4().hex[:8]
    accepted = threading.Semaphore(0)
    errors: list[str] = []
    responses: dict[int, httpx.Response] = {}

    def create(i: int, http: httpx.Client) -> None:
        body = json.dumps(
            {
                "name": f"burst-{batch}-{i}",
                "image": IMAGE,
                "command": SLEEP,
                "labels": {"batch": batch},
                **SMALL,
            }
        ).encode()
        resp = _post_with_retries(d, http, body, f"burst-{batch}-{i}", errors)
        responses[i] = resp
        if resp.status_code == 202:
            cells.created.append(resp.json()["entity"]["id"])
        accepted.release()

    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(create, i, http) for i in range(BURST)]
        for _ in range(10):
            assert accepted.acquire(timeout=60), "fewer than 10 creates accepted"
        done_at_kill = sum(f.done() for f in futures)
        d.kill_server()
        d.start_server()
        for f in futures:
            f.result(timeout=120)

    assert done_at_kill < BURST, "the server was killed after the burst, not during it"
    assert errors, "no request noticed the server's death: the test proved nothing"
    assert sorted(responses) == list(range(BURST))
    bad = {i: (r.status_code, r.text[:200]) for i, r in responses.items() if r.status_code != 202}
    assert not bad, bad
    cell_ids = sorted({r.json()["entity"]["id"] for r in responses.values()})
    assert len(cell_ids) == BURST

    def all_running() -> list[dict[str, Any]] | None:
        batch_cells = list(client.iter_cells("default", labels={"batch": batch}))
        ok = len(batch_cells) >= BURST and all(c["state"] == "RUNNING" for c in batch_cells)
        return batch_cells if ok else None

    running = wait_for(all_running, 120, interval=0.5, what=f"{BURST} cells RUNNING")
    assert sorted(c["id"] for c in running) == cell_ids, "exactly one cell per create"
    assert sorted(c["name"] for c in running) == sorted(f"burst-{batch}-{i}" for i in range(BURST))
    per_cell = _containers_by_cell(engine, cell_ids)
    dupes = {k: [c.id[:12] for c in v] for k, v in per_cell.items() if len(v) != 1}
    assert not dupes, f"cells without exactly one container: {dupes}"
    assert all(v[0].running for v in per_cell.values())
    assert len(engine.list({"cellplane.host": running[0]["host"]})) == BURST


def _snapshot(
    engine: PodmanDriver, cells: list[dict[str, Any]]
) -> dict[str, tuple[str, str | None]]:
    out = {}
    for c in cells:
        info = engine.inspect(c["container_id"])
        assert info.running and info.started_at, info
        out[c["id"]] = (info.id, info.started_at)
    return out


@pytest.mark.integration
def test_agent_killed_while_cells_run_adopts_them(deployment: Deployment, cells: Cells) -> None:
    d = deployment
    client, engine = cells.c, cells.engine
    started = cells.run_many([("adopt", None, {}) for _ in range(5)])
    before = _snapshot(engine, started)
    old_pid = d.agent_proc.pid if d.agent_proc else None

    d.kill_agent()
    assert d.agent_proc is not None and d.agent_proc.poll() is not None
    d.start_agent()
    assert d.agent_proc.pid != old_pid
    time.sleep(5)  # several reconcile passes of the new agent

    for c in started:
        containers = engine.list({"cellplane.cell": c["id"]})
        assert [x.id for x in containers] == [before[c["id"]][0]], containers
    assert _snapshot(engine, started) == before
    for c in started:
        now = client.get_cell(c["id"])
        assert now["state"] == "RUNNING" and now["container_id"] == before[c["id"]][0], now
        assert now["restarts"] == 0, now
    # The new agent really is in charge: it still acts on new requests.
    new = cells.run("after-agent-crash")
    assert new["state"] == "RUNNING"


@pytest.mark.integration
def test_deployment_restart_keeps_cells_running(deployment: Deployment, cells: Cells) -> None:
    d = deployment
    engine = cells.engine
    started = cells.run_many([("survivor", None, {}) for _ in range(3)])
    before = _snapshot(engine, started)
    old_pids = d.pids()

    d.stop_agent()
    d.stop_server()
    assert d.pids() == []
    d.start_server()
    d.start_agent()
    assert not set(d.pids()) & set(old_pids)
    time.sleep(5)

    with d.client() as client:
        listed = {c["id"]: c for c in client.iter_cells("default")}
        for c in started:
            assert listed[c["id"]]["state"] == "RUNNING", listed[c["id"]]
            assert listed[c["id"]]["container_id"] == before[c["id"]][0]
    assert _snapshot(engine, started) == before
    for c in started:
        assert len(engine.list({"cellplane.cell": c["id"]})) == 1
