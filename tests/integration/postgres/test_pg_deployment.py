"""A full deployment (server + agent + podman) whose state lives in PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from cellplane.client import CellplaneError, Client
from cellplane.testing.harness import Deployment
from cellplane.testing.simhosts import SimHosts, SimSpec
from cellplane.testing.waits import SLEEP, unique, wait_for

from .conftest import IMAGE

T = TypeVar("T")

SMALL: dict[str, Any] = {"cpu": 0.05, "memory_mb": 32}


def wait_state(client: Client, cell_id: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        cell = client.get_cell(cell_id)
        return cell if cell["state"] == state else None

    return wait_for(check, timeout, f"cell {cell_id} {state}")


def delete_and_wait(client: Client, cell_id: str, timeout: float = 60.0) -> None:
    try:
        task = client.delete_cell(cell_id)
    except CellplaneError as e:
        if e.status == 404:
            return
        if e.status != 409:  # already being deleted
            raise
    else:
        done = client.wait_task(task["id"], timeout=timeout)
        assert done["state"] == "COMPLETED", done

    def gone() -> bool:
        try:
            client.get_cell(cell_id)
        except CellplaneError as e:
            if e.status == 404:
                return True
            raise
        return False

    wait_for(gone, timeout, f"cell {cell_id} deleted")


def assert_recent(stamp: str, since: datetime) -> None:
    """`stamp` is an ISO 8601 time with a zone, between `since` (less a little) and now."""
    at = datetime.fromisoformat(stamp)
    assert at.tzinfo is not None, stamp
    assert since - timedelta(seconds=5) <= at <= datetime.now(UTC) + timedelta(seconds=5), (
        stamp,
        since.isoformat(),
    )


def assert_problem(resp: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("content-type", "").startswith("application/problem+json"), resp.headers
    body = resp.json()
    for key in ("type", "title", "status", "detail"):
        assert key in body, (key, body)
    assert body["status"] == status, body
    assert body["type"].endswith("/" + slug), body
    return body


@pytest.mark.integration
def test_cell_lifecycle(client: Client) -> None:
    started = datetime.now(UTC)
    task = client.create_cell(
        "default", "pg1", IMAGE, command=["sleep", "600"], cpu=0.5, memory_mb=64
    )
    cell_id = task["entity"]["id"]
    try:
        done = client.wait_task(task["id"], timeout=60)
        assert done["state"] == "COMPLETED", done
        cell = wait_state(client, cell_id, "RUNNING")
        assert cell["name"] == "pg1" and cell["cpu"] == 0.5 and cell["memory_mb"] == 64, cell
        assert cell["host"] and cell["container_id"], cell

        # Timestamps survive the round trip through timestamptz in a non-UTC session zone.
        for stamp in [done["created_at"], *(e["at"] for e in cell["events"])]:
            assert_recent(stamp, started)

        out = client.exec_cell(cell_id, ["sh", "-c", "echo from-pg; exit 3"])
        assert out["exit_code"] == 3 and out["output"].split() == ["from-pg"], out

        # `sleep` as PID 1 ignores SIGTERM: a short grace period keeps the test fast.
        stopped = client.wait_task(client.stop_cell(cell_id, timeout=1)["id"], timeout=60)
        assert stopped["state"] == "COMPLETED", stopped
        assert wait_state(client, cell_id, "STOPPED")["desired_state"] == "STOPPED"
    finally:
        delete_and_wait(client, cell_id)
    assert client.find_cell("default", "pg1") is None


@pytest.mark.integration
def test_concurrent_creates_with_idempotency_keys(client: Client) -> None:
    batch = uuid.uuid4().hex[:8]
    names = [f"pgc-{batch}-{i}" for i in range(20)]
    keys = {name: f"create-{name}" for name in names}

    def create(name: str) -> dict[str, Any]:
        return client.create_cell(
            "default",
            name,
            IMAGE,
            command=SLEEP,
            labels={"batch": batch},
            idempotency_key=keys[name],
            **SMALL,
        )

    ids: set[str] = set()
    try:
        # Every request twice, interleaved, from 8 threads: the replays race the originals.
        with ThreadPoolExecutor(8) as pool:
            tasks = list(pool.map(create, names + names))
        ids = {t["entity"]["id"] for t in tasks}
        by_name: dict[str, set[str]] = {}
        for name, t in zip(names + names, tasks, strict=True):
            by_name.setdefault(name, set()).add(t["id"])
        assert all(len(v) == 1 for v in by_name.values()), by_name  # one task per key
        assert len(ids) == 20, sorted(ids)

        with ThreadPoolExecutor(8) as pool:
            done = list(pool.map(lambda t: client.wait_task(t["id"], timeout=90), tasks[:20]))
        assert all(t["state"] == "COMPLETED" for t in done), [t["state"] for t in done]
        for cell_id in ids:
            wait_state(client, cell_id, "RUNNING")
        listed = list(client.iter_cells("default", labels={"batch": batch}))
        assert sorted(c["name"] for c in listed) == sorted(names)
        # Small pages: every cell exactly once, whatever order PostgreSQL returns ties in.
        paged: list[str] = []
        cursor = None
        for _ in range(10):
            page = client.list_cells("default", labels={"batch": batch}, limit=7, cursor=cursor)
            paged += [c["id"] for c in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert sorted(paged) == sorted(ids), paged
        running = client.list_cells("default", labels={"batch": batch}, state="RUNNING")
        assert len(running["items"]) == 20, running
        assert all(c["state"] == "RUNNING" for c in listed), [c["state"] for c in listed]

        # A replay after the fact still answers with the first task.
        again = create(names[0])
        assert again["id"] == by_name[names[0]].pop(), again
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: delete_and_wait(client, i, timeout=90), ids))
    assert list(client.iter_cells("default", labels={"batch": batch})) == []


@pytest.mark.integration
def test_duplicate_name_is_a_conflict(client: Client, api: httpx.Client) -> None:
    name = unique("pgdup")
    body = {"name": name, "image": IMAGE, "command": SLEEP, **SMALL}
    first = api.post("/v1/projects/default/cells", json=body)
    assert first.status_code == 202, first.text
    cell_id = first.json()["entity"]["id"]
    try:
        assert_problem(api.post("/v1/projects/default/cells", json=body), 409, "conflict")

        # Racing creates of one new name (no keys): exactly one wins, the others get 409.
        racer = {**body, "name": unique("pgrace")}
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: api.post("/v1/projects/default/cells", json=racer), range(8))
            )
        won = [r for r in answers if r.status_code == 202]
        assert len(won) == 1, [(r.status_code, r.text) for r in answers]
        for r in answers:
            if r is not won[0]:
                assert_problem(r, 409, "conflict")
        delete_and_wait(client, won[0].json()["entity"]["id"])
    finally:
        delete_and_wait(client, cell_id)


@pytest.mark.integration
def test_server_restart_keeps_state(deployment: Deployment, client: Client) -> None:
    task = client.create_cell("default", unique("pgkeep"), IMAGE, command=SLEEP, **SMALL)
    cell_id = task["entity"]["id"]
    try:
        assert client.wait_task(task["id"], timeout=60)["state"] == "COMPLETED"
        cell = wait_state(client, cell_id, "RUNNING")
        before = {
            "cells": {c["id"]: c["name"] for c in client.iter_cells("default")},
            "images": sorted(i["name"] for i in client.iter_images()),
            "projects": sorted(p["name"] for p in client.iter_projects()),
            "flavors": sorted(f["name"] for f in client.iter_flavors()),
            "hosts": sorted(h["name"] for h in client.iter_hosts()),
        }
        assert IMAGE in before["images"], before

        deployment.stop_server()
        deployment.start_server()
        deployment.wait_host_ready()

        with deployment.client() as fresh:  # the admin token survived too
            after = {
                "cells": {c["id"]: c["name"] for c in fresh.iter_cells("default")},
                "images": sorted(i["name"] for i in fresh.iter_images()),
                "projects": sorted(p["name"] for p in fresh.iter_projects()),
                "flavors": sorted(f["name"] for f in fresh.iter_flavors()),
                "hosts": sorted(h["name"] for h in fresh.iter_hosts()),
            }
            assert after == before
            assert fresh.get_task(task["id"])["state"] == "COMPLETED"
            again = wait_state(fresh, cell_id, "RUNNING")
            assert again["container_id"] == cell["container_id"], (cell, again)
            out = fresh.exec_cell(cell_id, ["echo", "still-here"])
            assert out["exit_code"] == 0 and out["output"].strip() == "still-here", out
    finally:
        delete_and_wait(client, cell_id)


@pytest.mark.integration
def test_timestamps_are_utc(client: Client) -> None:
    """API times are UTC whatever the database session's time zone (here Asia/Kathmandu)."""
    [host] = client.list_hosts()["items"]
    stamps = {"host.created_at": host["created_at"], "host.last_heartbeat": host["last_heartbeat"]}
    offsets = {k: datetime.fromisoformat(v).utcoffset() for k, v in stamps.items()}
    assert all(o == timedelta(0) for o in offsets.values()), stamps


def _a_report_writes_the_cell_while(
    deployment: Deployment, host_id: str, cell_id: str, request: Callable[[], httpx.Response]
) -> httpx.Response:
    """Play a status report's order by hand while `request` runs: hold the host's row, wait
    until the request waits for a lock on a host, then write the cell's row as the report
    does. The write must go through at once (the request holds no lock on the cell yet);
    then the request goes on. Returns its answer."""
    engine = create_engine(deployment.database_url or "", poolclass=NullPool)
    try:
        with engine.connect() as report, engine.connect() as watch:
            report.execute(text("SET lock_timeout = '500ms'"))  # less than deadlock_timeout (1 s)
            report.execute(text("SELECT id FROM hosts WHERE id = :h FOR UPDATE"), {"h": host_id})
            mine = report.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with ThreadPoolExecutor(1) as pool:
                running = pool.submit(request)

                def request_waits() -> bool:
                    waiting = watch.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND pid <> :me AND query ILIKE '%hosts%'"
                        ),
                        {"me": mine},
                    ).scalar_one()
                    watch.rollback()  # a transaction sees one snapshot of the activity
                    return bool(waiting) or running.done()

                wait_for(request_waits, 20, "the request waiting for a lock")
                assert not running.done(), running.result().text  # it waits for the host
                time.sleep(0.2)
                # The report's own write: the cell's row is not held by the waiting request.
                report.execute(
                    text("UPDATE cells SET updated_at = updated_at WHERE id = :c"), {"c": cell_id}
                )
                report.commit()
                return running.result(timeout=30)
    finally:
        engine.dispose()


@pytest.mark.integration
def test_a_delete_takes_the_hosts_lock_before_the_cells_as_a_status_report_does(
    deployment: Deployment, client: Client, api: httpx.Client
) -> None:
    """A status report locks its host's row, then writes the host's cells. A delete wrote the
    cell first and then bumped the host's revision: the two deadlocked and PostgreSQL rolled
    one back (the CI once saw DELETE answer 503). With the report's order played by hand, the
    delete waits for the host and then completes."""
    cell_id = client.create_cell("default", unique("pglock"), IMAGE, command=SLEEP, **SMALL)[
        "entity"
    ]["id"]
    try:
        host_id = wait_state(client, cell_id, "RUNNING")["host"]
        answer = _a_report_writes_the_cell_while(
            deployment, host_id, cell_id, lambda: api.delete(f"/v1/cells/{cell_id}")
        )
        assert answer.status_code == 202, answer.text
        done = client.wait_task(answer.json()["id"], timeout=60)
        assert done["state"] == "COMPLETED", done
    finally:
        delete_and_wait(client, cell_id)


@pytest.mark.integration
def test_a_move_takes_both_hosts_locks_before_the_cells(
    deployment: Deployment, client: Client, api: httpx.Client
) -> None:
    """A move bumps the revisions of the cell's host and of its target. It too must lock them
    before the cell's row, as a status report of either host does. The target is a simulated
    host (the real agent protocol, containers that run at once)."""
    name = unique("pgmove")
    spec = SimSpec(
        server=deployment.url,
        join_token=deployment.join_file.read_text().strip(),
        count=1,
        prefix=name,
        processes=1,
    )
    cell_id = client.create_cell("default", unique("pgmv"), IMAGE, command=SLEEP, **SMALL)[
        "entity"
    ]["id"]
    try:
        host_id = wait_state(client, cell_id, "RUNNING")["host"]
        with SimHosts(spec):
            target = f"{name}-00000"
            wait_for(
                lambda: any(
                    h["name"] == target and h["state"] == "READY"
                    for h in client.list_hosts(limit=100)["items"]
                ),
                30,
                f"host {target} READY",
            )
            answer = _a_report_writes_the_cell_while(
                deployment,
                host_id,
                cell_id,
                lambda: api.post(f"/v1/cells/{cell_id}/move", json={"host": target}),
            )
            assert answer.status_code == 202, answer.text
            done = client.wait_task(answer.json()["id"], timeout=60)
            assert done["state"] == "COMPLETED", done
            assert client.get_cell(cell_id)["host_name"] == target
            delete_and_wait(client, cell_id)
    finally:
        delete_and_wait(client, cell_id)
