"""A cell's life through the developer API, the controller and the agent protocol; volumes."""

from __future__ import annotations

import threading
import time
from typing import Any

from cellplane_platform_support import Platform, event


def _steps(task: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["state"] for s in task["steps"]}


def test_create_run_stop_delete(plat: Platform) -> None:
    r = plat.create_cell("web", labels={"app": "web"}, env={"K": "V"})
    assert r.status_code == 202
    assert r.headers["location"] == f"/v1/tasks/{r.json()['id']}"
    create_task = r.json()
    assert create_task["kind"] == "CREATE_CELL" and create_task["state"] == "QUEUED"
    cid = create_task["entity"]["id"]
    assert create_task["entity"] == {"kind": "cell", "id": cid}
    other = plat.create_cell("other").json()["entity"]["id"]
    plat.schedule()

    # Revision 0: the full view of the host.
    a = plat.assignments(0)
    assert a["full"] is True
    assert {c["cell_id"] for c in a["cells"]} == {cid, other}
    web = next(c for c in a["cells"] if c["cell_id"] == cid)
    assert web["env"] == {"K": "V"} and web["labels"] == {"app": "web"}
    assert web["command"] == ["sleep", "3600"]
    rev = a["revision"]
    # Nothing changed since: an immediate, empty delta.
    d = plat.assignments(rev, wait=0)
    assert d == {
        "api_version": "agent/v1",
        "revision": rev,
        "full": False,
        "cells": [],
        "volumes": [],
    }

    plat.report(
        {
            "cell_id": cid,
            "state": "RUNNING",
            "container_id": "c" * 64,
            "address": "10.89.0.5",
            "exit_code": None,
            "restarts": 0,
            "events": [event("image-ready"), event("created"), event("started")],
        }
    )
    task = plat.task(create_task["id"])
    assert task["state"] == "COMPLETED" and task["progress"] == 100
    assert set(_steps(task).values()) == {"COMPLETED"}
    assert task["finished_at"]
    cell = plat.cell(cid)
    assert cell["state"] == "RUNNING" and cell["host"] == plat.host_id
    assert cell["address"] == "10.89.0.5" and cell["container_id"] == "c" * 64
    assert [e["type"] for e in cell["events"]] == [
        "accepted",
        "scheduled",
        "image-ready",
        "created",
        "started",
    ]

    # Stop: desired state and host revision move; the delta carries only this cell.
    r = plat.client.post(f"/v1/cells/{cid}/stop", json={"timeout": 3}, headers=plat.admin)
    assert r.status_code == 202
    stop_task = r.json()
    assert stop_task["kind"] == "STOP_CELL" and _steps(stop_task) == {"STOP": "QUEUED"}
    cell = plat.cell(cid)
    # The timeout is this stop's: the agent gets it; the cell keeps its own for later stops.
    assert cell["desired_state"] == "STOPPED" and cell["stop_timeout"] == 10
    d = plat.assignments(rev, wait=0)
    assert d["revision"] == rev + 1 and d["full"] is False
    assert [(c["cell_id"], c["desired_state"], c["stop_timeout"]) for c in d["cells"]] == [
        (cid, "STOPPED", 3)
    ]
    plat.report(
        {"cell_id": cid, "state": "STOPPED", "exit_code": 143, "events": [event("stopped")]}
    )
    assert plat.task(stop_task["id"])["state"] == "COMPLETED"
    assert plat.cell(cid)["state"] == "STOPPED" and plat.cell(cid)["exit_code"] == 143

    # Delete: DELETING until the agent confirms the removal, then gone.
    r = plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin)
    assert r.status_code == 202
    delete_task = r.json()
    assert delete_task["kind"] == "DELETE_CELL"
    assert _steps(delete_task) == {"STOP": "STARTED", "DELETE": "QUEUED"}
    assert plat.cell(cid)["state"] == "DELETING"
    d = plat.assignments(rev + 1, wait=0)
    assert [(c["cell_id"], c["desired_state"]) for c in d["cells"]] == [(cid, "DELETED")]
    # Once deleting, the cell refuses other changes.
    r = plat.client.post(f"/v1/cells/{cid}/start", headers=plat.admin)
    assert r.status_code == 409
    plat.report({"cell_id": cid, "removed": True, "events": [event("stopped"), event("removed")]})
    r = plat.client.get(f"/v1/cells/{cid}", headers=plat.admin)
    assert r.status_code == 404
    task = plat.task(delete_task["id"])
    assert task["state"] == "COMPLETED" and set(_steps(task).values()) == {"COMPLETED"}
    names = [
        c["name"]
        for c in plat.client.get("/v1/projects/default/cells", headers=plat.admin).json()["items"]
    ]
    assert names == ["other"]
    assert plat.cell(other)["state"] == "SCHEDULED"


def test_new_task_supersedes_the_running_one(plat: Platform) -> None:
    r = plat.create_cell("web")
    cid, first = r.json()["entity"]["id"], r.json()["id"]
    plat.schedule()
    stop = plat.client.post(f"/v1/cells/{cid}/stop", headers=plat.admin).json()
    t = plat.task(first)
    assert t["state"] == "ERROR"
    assert stop["id"] in t["error"] and "superseded" in t["error"]
    assert plat.cell(cid)["task"] == stop["id"]


def test_start_and_restart_tasks(plat: Platform) -> None:
    cid = plat.create_cell("web").json()["entity"]["id"]
    plat.schedule()
    r = plat.client.post(f"/v1/cells/{cid}/restart", headers=plat.admin)
    assert r.status_code == 202
    t = r.json()
    assert t["kind"] == "RESTART_CELL"
    assert _steps(t) == {"SCHEDULE": "COMPLETED", "START": "QUEUED", "RUNNING": "QUEUED"}
    (a,) = plat.assignments(0)["cells"]
    assert a["restart_requested_at"] is not None
    plat.report(
        {"cell_id": cid, "state": "RUNNING", "events": [event("started", "restarted on request")]}
    )
    assert plat.task(t["id"])["state"] == "COMPLETED"


def test_unplaced_cells_stop_and_delete_at_once(plat: Platform) -> None:
    cid = plat.create_cell("web").json()["entity"]["id"]
    stop = plat.client.post(f"/v1/cells/{cid}/stop", headers=plat.admin).json()
    assert stop["state"] == "COMPLETED"
    assert plat.cell(cid)["state"] == "STOPPED"
    assert plat.schedule() == set()  # a stopped cell is not placed
    start = plat.client.post(f"/v1/cells/{cid}/start", headers=plat.admin).json()
    assert start["state"] == "QUEUED"
    delete = plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).json()
    assert delete["state"] == "COMPLETED" and delete["progress"] == 100
    assert plat.client.get(f"/v1/cells/{cid}", headers=plat.admin).status_code == 404
    assert plat.cell_count() == 0


def test_failure_report_fails_the_task(plat: Platform) -> None:
    r = plat.create_cell("web")
    cid, tid = r.json()["entity"]["id"], r.json()["id"]
    plat.schedule()
    plat.report(
        {
            "cell_id": cid,
            "state": "FAILED",
            "message": "no such image",
            "events": [event("failed", "no such image")],
        }
    )
    t = plat.task(tid)
    assert t["state"] == "ERROR" and t["error"] == "no such image"
    assert _steps(t)["PREPARE_IMAGE"] == "ERROR"
    assert plat.cell(cid)["state"] == "FAILED"


def test_long_poll_wakes_on_a_change(plat: Platform) -> None:
    cid = plat.create_cell("web").json()["entity"]["id"]
    plat.schedule()
    rev = plat.assignments(0)["revision"]
    got: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        got["data"] = plat.assignments(rev, wait=10)
        got["took"] = time.monotonic() - started

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.2)
    assert plat.client.post(f"/v1/cells/{cid}/stop", headers=plat.admin).status_code == 202
    t.join(timeout=10)
    assert not t.is_alive()
    assert got["took"] < 5, "the long poll was not woken by the change"
    assert got["data"]["revision"] == rev + 1
    assert [c["cell_id"] for c in got["data"]["cells"]] == [cid]


def test_heartbeat(plat: Platform) -> None:
    r = plat.client.post(f"/v1/agent/hosts/{plat.host_id}/heartbeat", headers=plat.agent)
    assert r.status_code == 204
    h = plat.client.get(f"/v1/hosts/{plat.host_id}", headers=plat.admin).json()
    assert h["state"] == "READY" and h["last_heartbeat"]


def test_host_usage_counts_placed_cells(plat: Platform) -> None:
    plat.create_cell("a", cpu=1, memory_mb=1024)
    plat.create_cell("b")  # SMALL: 0.5 cpu, 512 MB, 1 GB
    plat.schedule()
    h = plat.client.get(f"/v1/hosts/{plat.host_id}", headers=plat.admin).json()
    assert h["usage"] == {
        "cpu": 1.5,
        "memory_mb": 1536,
        "disk_gb": 1,
        "cells": 2,
        "stopped_cells": 0,
    }
    assert h["capacity"]["cpu"] == 8.0 and h["capacity"]["memory_mb"] == 4096
    # What is left is what admission checks against.
    r = plat.create_cell("c", cpu=1, memory_mb=3000)
    assert r.status_code == 409 and "2560 MB" in r.json()["detail"]


# --- volumes ---


def test_volume_lifecycle(plat: Platform) -> None:
    r = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "data", "size_gb": 2}, headers=plat.admin
    )
    assert r.status_code == 201
    vol = r.json()
    assert r.headers["location"] == f"/v1/volumes/{vol['id']}"
    assert (vol["name"], vol["size_gb"], vol["host"], vol["attached_to"]) == ("data", 2, None, [])
    dup = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "data"}, headers=plat.admin
    )
    assert dup.status_code == 409
    bad = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "Data!"}, headers=plat.admin
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "name"

    cid = plat.create_cell("db", volumes=[{"volume": "data", "path": "/data"}]).json()["entity"][
        "id"
    ]
    v = plat.client.get(f"/v1/volumes/{vol['id']}", headers=plat.admin).json()
    assert v["attached_to"] == [cid] and v["attached_names"] == ["db"]
    r = plat.client.delete(f"/v1/volumes/{vol['id']}", headers=plat.admin)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    # The refusal names the cell as the user knows it, not by id.
    assert r.json()["type"].endswith("/conflict") and "'db'" in r.json()["detail"]
    assert cid not in r.json()["detail"]
    items = plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"]
    assert [i["id"] for i in items] == [vol["id"]]

    # The cell never ran anywhere: deleting it frees the volume, which then goes at once.
    assert plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).status_code == 202
    assert plat.client.delete(f"/v1/volumes/{vol['id']}", headers=plat.admin).status_code == 204
    assert plat.client.get(f"/v1/volumes/{vol['id']}", headers=plat.admin).status_code == 404
    assert plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"] == []


def test_two_mounts_at_one_path(plat: Platform) -> None:
    for name in ("a", "b"):
        plat.client.post("/v1/projects/default/volumes", json={"name": name}, headers=plat.admin)
    r = plat.create_cell(
        "db", volumes=[{"volume": "a", "path": "/data"}, {"volume": "b", "path": "/data"}]
    )
    assert r.status_code == 422 and "same path" in r.json()["detail"]
