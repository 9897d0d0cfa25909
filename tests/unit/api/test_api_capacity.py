"""What a cell reserves on its host: a stopped or ended cell nothing (as Kubernetes and Nomad count
a terminated workload); starting it again re-checks that it fits. A size given by cpu or memory
alone takes the other from the nearest flavor. Tasks of a project are listed newest first."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import Platform, event


def _host(plat: Platform) -> dict[str, Any]:
    r = plat.client.get(f"/v1/hosts/{plat.host_id}", headers=plat.admin)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _running(plat: Platform, name: str, **body: Any) -> str:
    r = plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    cid = str(r.json()["entity"]["id"])
    plat.schedule()
    plat.report({"cell_id": cid, "state": "RUNNING", "events": [event("started")]})
    return cid


def _stopped(plat: Platform, cid: str) -> None:
    r = plat.client.post(f"/v1/cells/{cid}/stop", json={}, headers=plat.admin)
    assert r.status_code == 202, r.text
    plat.report({"cell_id": cid, "state": "STOPPED", "exit_code": 143, "events": []})


def test_a_stopped_cell_reserves_nothing_and_must_fit_again_to_start(plat: Platform) -> None:
    # The host: 8 cpu, 4096 MB.
    big = _running(
        plat, "big", cpu=2, memory_mb=3000, ports=[{"container_port": 80, "host_port": 8080}]
    )
    assert _host(plat)["usage"]["memory_mb"] == 3000
    # Stopping it (desired STOPPED) while the container still runs keeps the reservation.
    r = plat.client.post(f"/v1/cells/{big}/stop", json={}, headers=plat.admin)
    assert r.status_code == 202
    assert _host(plat)["usage"]["memory_mb"] == 3000
    plat.report({"cell_id": big, "state": "STOPPED", "exit_code": 143, "events": []})
    usage = _host(plat)["usage"]
    assert usage == {
        "cpu": 0.0, "memory_mb": 0, "disk_gb": 0, "cells": 0, "stopped_cells": 1,
    }  # fmt: skip
    # What it released is free for others: admission and the scheduler agree.
    other = _running(plat, "other", cpu=1, memory_mb=2048)
    assert plat.cell(other)["host"] == plat.host_id
    # Starting it again: it no longer fits, and the refusal says what is short; nothing changes.
    r = plat.client.post(f"/v1/cells/{big}/start", headers=plat.admin)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "no longer fits" in detail and "'big'" in detail
    assert "needs 3000 MB memory, 2048 MB free" in detail
    assert plat.cell(big)["desired_state"] == "STOPPED"
    # Once the other one is stopped too, it starts.
    _stopped(plat, other)
    r = plat.client.post(f"/v1/cells/{big}/start", headers=plat.admin)
    assert r.status_code == 202, r.text
    assert _host(plat)["usage"]["memory_mb"] == 3000


def test_a_stopped_cells_published_port_is_checked_when_it_starts(plat: Platform) -> None:
    port = [{"container_port": 80, "host_port": 8080}]
    first = _running(plat, "first", ports=port)
    _stopped(plat, first)
    _running(plat, "second", ports=port)  # the port is free while the first is stopped
    r = plat.client.post(f"/v1/cells/{first}/start", headers=plat.admin)
    assert r.status_code == 409 and "port 8080/tcp is taken" in r.json()["detail"]


def test_an_ended_cell_reserves_nothing(plat: Platform) -> None:
    cid = _running(plat, "job", cpu=1, memory_mb=1024)  # restart policy: never
    plat.report(
        {
            "cell_id": cid,
            "state": "EXITED",
            "exit_code": 0,
            "ended": True,
            "events": [event("exited")],
        }
    )
    cell = plat.cell(cid)
    assert cell["state"] == "EXITED" and cell["desired_state"] == "RUNNING"
    usage = _host(plat)["usage"]
    assert (usage["memory_mb"], usage["cells"], usage["stopped_cells"]) == (0, 0, 1)


def test_memory_alone_takes_the_cpu_of_the_nearest_flavor(plat: Platform) -> None:
    # Flavors: SMALL 0.5/512, MEDIUM 1/1024, LARGE 2/4096, EXTRA_LARGE 4/8192.
    for name, body, size in (
        ("m1", {"memory_mb": 1000}, (1.0, 1000)),  # MEDIUM is the smallest with >= 1000 MB
        ("m2", {"memory_mb": 256}, (0.5, 256)),
        ("c1", {"cpu": 2}, (2.0, 4096)),  # LARGE is the smallest with >= 2 cpu
    ):
        r = plat.create_cell(name, **body)
        assert r.status_code == 202, r.text
        cell = plat.cell(str(r.json()["entity"]["id"]))
        assert (cell["cpu"], cell["memory_mb"], cell["flavor"]) == (*size, None), name
        plat.client.delete(f"/v1/cells/{cell['id']}", headers=plat.admin)
    # Too big for any flavor and any host: the refusal says what the largest host has free.
    r = plat.create_cell("huge", memory_mb=999999)
    assert r.status_code == 409, r.text
    assert "999999 MB" in r.json()["detail"] and "4096 MB" in r.json()["detail"]


def test_task_ls_lists_the_projects_tasks_newest_first_with_names(plat: Platform) -> None:
    cid = _running(plat, "web")
    plat.client.post(f"/v1/cells/{cid}/stop", json={}, headers=plat.admin)
    r = plat.client.get("/v1/projects/default/tasks", headers=plat.admin)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [t["kind"] for t in items] == ["STOP_CELL", "CREATE_CELL"]
    assert items[0]["entity"] == {"kind": "cell", "id": cid, "name": "web"}
    assert (
        len(
            plat.client.get("/v1/projects/default/tasks?limit=1", headers=plat.admin).json()[
                "items"
            ]
        )
        == 1
    )
    # A deleted cell's tasks stay listed (their project is kept on the task).
    plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin)
    plat.report({"cell_id": cid, "removed": True, "events": []})
    items = plat.client.get("/v1/projects/default/tasks", headers=plat.admin).json()["items"]
    assert items[0]["kind"] == "DELETE_CELL" and items[0]["entity"]["name"] is None
    missing = plat.client.get("/v1/projects/nope/tasks", headers=plat.admin)
    assert missing.status_code == 404


def test_a_422_names_the_field_in_plain_words(plat: Platform) -> None:
    r = plat.create_cell("a", flavor="SMALL", cpu=1)
    body = r.json()
    assert r.status_code == 422
    assert body["detail"] == "give a flavor or explicit cpu/memory_mb, not both"
    r = plat.client.post("/v1/projects/default/cells", json={"name": "a"}, headers=plat.admin)
    assert r.json()["detail"] == "image: is required"
    r = plat.create_cell("a", cpu=-1, memory_mb=64, bogus=1)
    detail = r.json()["detail"]
    assert "cpu: input should be greater than 0" in detail
    assert "bogus: is not a field of this request" in detail
