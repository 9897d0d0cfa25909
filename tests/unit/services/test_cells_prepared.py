"""A cell made but not started (`docker create`: `cells.create(..., prepare=True)`), through
the in-process server: placed at once, its task done when the agent reports the container made,
holding its size on the host, and started by a start request like any other."""

from __future__ import annotations

from typing import Any

import pytest
from cellplane_platform_support import Platform, event
from sqlalchemy import select

from cellplane.errors import InsufficientCapacity
from cellplane.ids import utcnow
from cellplane.services import cells, host_views, hosts, placement
from cellplane.services.context import Principal
from cellplane.services.schemas import CellCreate
from cellplane.state.models import Project


def _member(plat: Platform) -> Principal:
    with plat.svc.db.reader() as s:
        tenant_id = s.scalar(select(Project.tenant_id).where(Project.name == "default").limit(1))
    assert tenant_id is not None
    return Principal(
        subject="usr-t", tenant_id=tenant_id, tenant="default", roles=("project-member",)
    )


def _prepare(plat: Platform, name: str, **body: Any) -> tuple[str, str]:
    spec = CellCreate.model_validate(
        {"name": name, "image": "host", "command": ["sleep", "3600"], "start": False, **body}
    )
    member = _member(plat)
    with plat.svc.db.session() as s:
        out = cells.create(plat.svc, s, member, "default", spec, prepare=True)
    return str(out.body["entity"]["id"]), str(out.body["id"])


def _assigned(plat: Platform, cell_id: str) -> dict[str, Any]:
    (a,) = [c for c in plat.assignments()["cells"] if c["cell_id"] == cell_id]
    return a


def test_a_prepared_cell_is_placed_and_its_task_ends_when_the_container_is_made(
    plat: Platform,
) -> None:
    cid, tid = _prepare(plat, "made", cpu=0.5, memory_mb=256)
    assert plat.cell(cid)["desired_state"] == "CREATED"
    assert [s["name"] for s in plat.task(tid)["steps"]] == ["SCHEDULE", "PREPARE_IMAGE", "CREATE"]
    plat.schedule()
    cell = plat.cell(cid)
    assert cell["host"] == plat.host_id and cell["state"] == "SCHEDULED"
    assert _assigned(plat, cid)["desired_state"] == "CREATED"
    # It holds its size on the host, as a running cell does.
    with plat.svc.db.reader() as s:
        usage = host_views.usage_by_host(s)[plat.host_id]
    assert usage["cpu"] == 0.5 and usage["memory_mb"] == 256 and usage["cells"] == 1
    plat.report(
        {
            "cell_id": cid,
            "state": "CREATED",
            "container_id": "c0ffee",
            "events": [event("image-ready"), event("created", "c0ffee")],
        }
    )
    cell, task = plat.cell(cid), plat.task(tid)
    assert cell["state"] == "CREATED" and cell["container_id"] == "c0ffee"
    assert task["state"] == "COMPLETED" and task["progress"] == 100


def test_a_start_runs_the_made_container_where_it_is(plat: Platform) -> None:
    cid, _ = _prepare(plat, "later")
    plat.schedule()
    plat.report({"cell_id": cid, "state": "CREATED", "container_id": "c1"})
    member = _member(plat)
    with plat.svc.db.session() as s:
        out = cells.start(plat.svc, s, member, cid)
    start_task = str(out.body["id"])
    assert plat.schedule() == set()  # placed already: nothing for the scheduler
    a = _assigned(plat, cid)
    assert a["desired_state"] == "RUNNING" and a["restart_requested_at"]
    plat.report(
        {"cell_id": cid, "state": "RUNNING", "container_id": "c1", "events": [event("started")]}
    )
    assert plat.cell(cid)["state"] == "RUNNING"
    assert plat.task(start_task)["state"] == "COMPLETED"


def test_the_api_start_false_still_records_an_unplaced_stopped_cell(plat: Platform) -> None:
    r = plat.create_cell("idle", start=False)
    assert r.status_code == 202, r.text
    cid = str(r.json()["entity"]["id"])
    assert plat.schedule() == set()
    assert plat.cell(cid)["desired_state"] == "STOPPED" and plat.cell(cid)["host"] is None


def _prepare_placed(plat: Platform, name: str, **body: Any) -> tuple[str, str, set[str]]:
    """As `docker create` does it: admitted and placed in one transaction (`placement`)."""
    spec = CellCreate.model_validate(
        {"name": name, "image": "host", "command": ["sleep", "3600"], "start": False, **body}
    )
    member = _member(plat)
    with plat.svc.db.session() as s:
        out = cells.create(plat.svc, s, member, "default", spec, prepare=True)
        placed = placement.place_one(plat.svc, s, str(out.body["entity"]["id"]), utcnow())
    return str(out.body["entity"]["id"]), str(out.body["id"]), placed.committed(plat.svc)


def test_a_cell_placed_with_its_admission_needs_no_controller_pass(plat: Platform) -> None:
    rev = hosts.current_revision(plat.svc, plat.host_id)
    cid, tid, topics = _prepare_placed(plat, "now", cpu=0.5, memory_mb=256)
    assert topics == {f"host:{plat.host_id}", f"task:{tid}", f"cell:{cid}"}
    cell = plat.cell(cid)
    assert cell["host"] == plat.host_id and cell["state"] == "SCHEDULED"
    assert [e["type"] for e in cell["events"]] == ["accepted", "scheduled"]
    assert [s["state"] for s in plat.task(tid)["steps"]] == ["COMPLETED", "STARTED", "QUEUED"]
    assert hosts.current_revision(plat.svc, plat.host_id) == rev + 1
    assert _assigned(plat, cid)["desired_state"] == "CREATED"
    assert plat.schedule() == set()  # the controller's pass finds nothing left to place
    # Admission counts the placed cell at once (its cached view of the host was dropped).
    with plat.svc.db.reader() as s:
        usage = host_views.usage_by_host(s)[plat.host_id]
    assert usage["cells"] == 1 and usage["memory_mb"] == 256


def test_placed_at_admission_the_next_create_sees_the_host_full(plat: Platform) -> None:
    # The host holds four 1 GB cells; each placement drops admission's cached usage, so the
    # fifth `docker create` is refused at once, naming why, rather than left waiting.
    for i in range(4):
        cid, _, _ = _prepare_placed(plat, f"m{i}", cpu=0.5, memory_mb=1024)
        assert plat.cell(cid)["state"] == "SCHEDULED"
    before = plat.cell_count()
    with pytest.raises(InsufficientCapacity, match="1024 MB memory"):
        _prepare_placed(plat, "m4", cpu=0.5, memory_mb=1024)
    assert plat.cell_count() == before
