"""Renaming and resizing a cell (`services.cell_changes`, behind `docker rename` and `docker
update`), against the in-process server's SQLite database."""

from __future__ import annotations

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.errors import Conflict, Forbidden, NotFound, QuotaExceeded, ValidationFailed
from cellplane.services import cell_changes
from cellplane.services.context import Principal
from cellplane.state.identity_models import AuditEvent
from cellplane.state.models import Project


def _member(plat: Platform, *roles: str) -> Principal:
    with plat.svc.db.reader() as s:
        tenant_id = s.scalar(select(Project.tenant_id).where(Project.name == "default").limit(1))
    assert tenant_id is not None
    return Principal(subject="usr-t", tenant_id=tenant_id, tenant="default", roles=roles)


def _cell(plat: Platform, name: str, **body: object) -> str:
    r = plat.create_cell(name, cpu=0.25, memory_mb=64, **body)
    assert r.status_code == 202, r.text
    return plat.cell_id(name)


def test_rename_changes_the_name_keeps_the_cell_and_records_it(plat: Platform) -> None:
    cell_id = _cell(plat, "old")
    view = cell_changes.rename(plat.svc, _member(plat, "project-member"), cell_id, "new-name")
    assert view["id"] == cell_id and view["name"] == "new-name"
    assert plat.cell(cell_id)["name"] == "new-name"
    assert "renamed" in [e["type"] for e in plat.cell(cell_id)["events"]]
    with plat.svc.db.reader() as s:
        actions = s.scalars(select(AuditEvent.action)).all()
    assert "cell.rename" in actions


def test_rename_refuses_a_taken_name_or_a_bad_one_and_changes_nothing(plat: Platform) -> None:
    member = _member(plat, "project-member")
    a, _ = _cell(plat, "aaa"), _cell(plat, "bbb")
    with pytest.raises(Conflict, match="'bbb' already exists"):
        cell_changes.rename(plat.svc, member, a, "bbb")
    for bad in ("Upper", "under_score", "-dash", "x" * 64, ""):
        with pytest.raises(ValidationFailed):
            cell_changes.rename(plat.svc, member, a, bad)
    assert plat.cell(a)["name"] == "aaa"
    assert cell_changes.rename(plat.svc, member, a, "aaa")["name"] == "aaa"  # same name: fine


def test_a_viewer_cannot_rename_or_resize(plat: Platform) -> None:
    cell_id = _cell(plat, "ro")
    viewer = _member(plat, "project-viewer")
    with pytest.raises(Forbidden, match="cells:write"):
        cell_changes.rename(plat.svc, viewer, cell_id, "other")
    with pytest.raises(Forbidden, match="cells:write"):
        cell_changes.resize(plat.svc, viewer, cell_id, memory_mb=128)
    with pytest.raises(NotFound):
        cell_changes.rename(plat.svc, viewer, "cel_nosuchcell", "other")
    assert (plat.cell(cell_id)["name"], plat.cell(cell_id)["memory_mb"]) == ("ro", 64)


def test_resize_sets_the_limits_and_admits_only_the_increase(plat: Platform) -> None:
    member = _member(plat, "project-member")
    cell_id = _cell(plat, "sized")
    r = plat.client.put(
        "/v1/projects/default/quota", json={"memory_mb": 200, "cpu": 1}, headers=plat.admin
    )
    assert r.status_code == 200, r.text
    view = cell_changes.resize(plat.svc, member, cell_id, cpu=0.5, memory_mb=200)
    assert (view["cpu"], view["memory_mb"], view["flavor"]) == (0.5, 200, None)
    with pytest.raises(QuotaExceeded):
        cell_changes.resize(plat.svc, member, cell_id, memory_mb=201)
    assert plat.cell(cell_id)["memory_mb"] == 200
    # A decrease always fits, even under a quota lowered below usage.
    plat.client.put("/v1/projects/default/quota", json={"memory_mb": 10}, headers=plat.admin)
    assert cell_changes.resize(plat.svc, member, cell_id, memory_mb=100)["memory_mb"] == 100
    assert "resized" in [e["type"] for e in plat.cell(cell_id)["events"]]


def test_new_limits_reach_the_cells_host_agent_for_its_next_start(plat: Platform) -> None:
    cell_id = _cell(plat, "limits")
    plat.schedule()
    seen = plat.assignments()["revision"]
    cell_changes.resize(plat.svc, _member(plat, "project-member"), cell_id, memory_mb=96)
    (a,) = plat.assignments(seen)["cells"]
    assert (a["cell_id"], a["memory_mb"], a["cpu"]) == (cell_id, 96, 0.25)


@pytest.mark.parametrize(
    ("cpu", "memory_mb"), [(0.0, None), (-1.0, None), (2000.0, None), (None, 5), (None, 1 << 30)]
)
def test_resize_refuses_out_of_range_limits(
    plat: Platform, cpu: float | None, memory_mb: int | None
) -> None:
    cell_id = _cell(plat, "bounds")
    with pytest.raises(ValidationFailed):
        cell_changes.resize(
            plat.svc, _member(plat, "project-member"), cell_id, cpu=cpu, memory_mb=memory_mb
        )
    assert (plat.cell(cell_id)["cpu"], plat.cell(cell_id)["memory_mb"]) == (0.25, 64)


def test_a_new_restart_policy_reaches_the_cells_host_agent(plat: Platform) -> None:
    member = _member(plat, "project-member")
    cell_id = _cell(plat, "rs")
    plat.schedule()
    seen = plat.assignments()["revision"]
    view = cell_changes.set_restart(
        plat.svc, member, cell_id, "on-failure", 2, {"x.restart": "given", "gone": None}
    )
    assert view["restart"] == {"policy": "on-failure", "max_retries": 2}
    assert view["labels"]["x.restart"] == "given"
    # Only this change in the agent's next assignments (its revision moved).
    later = plat.assignments(seen)
    (a,) = later["cells"]
    assert a["cell_id"] == cell_id and a["restart"] == {"policy": "on-failure", "max_retries": 2}
    assert "updated" in [e["type"] for e in plat.cell(cell_id)["events"]]
    with plat.svc.db.reader() as s:
        assert "cell.update" in s.scalars(select(AuditEvent.action)).all()
    view = cell_changes.set_restart(plat.svc, member, cell_id, "always", None, {"x.restart": None})
    assert view["restart"]["policy"] == "always" and "x.restart" not in view["labels"]


def test_a_bad_restart_policy_is_refused_and_changes_nothing(plat: Platform) -> None:
    member = _member(plat, "project-member")
    cell_id = _cell(plat, "rs")
    for policy, retries in (("sometimes", None), ("always", 3), ("on-failure", -1)):
        with pytest.raises(ValidationFailed):
            cell_changes.set_restart(plat.svc, member, cell_id, policy, retries)
    with pytest.raises(Forbidden):
        cell_changes.set_restart(plat.svc, _member(plat, "project-viewer"), cell_id, "always")
    assert plat.cell(cell_id)["restart"] == {"policy": "never", "max_retries": None}


def test_a_pause_is_recorded_on_the_cell_and_refused_for_a_stopped_one(plat: Platform) -> None:
    member = _member(plat, "project-member")
    cell_id = _cell(plat, "pz")
    assert cell_changes.set_paused(plat.svc, member, cell_id, True)["state"] == "PAUSED"
    assert cell_changes.set_paused(plat.svc, member, cell_id, False)["state"] == "RUNNING"
    kinds = [e["type"] for e in plat.cell(cell_id)["events"]]
    assert "paused" in kinds and "unpaused" in kinds
    with plat.svc.db.reader() as s:
        actions = s.scalars(select(AuditEvent.action)).all()
    assert "cell.pause" in actions and "cell.unpause" in actions
    with pytest.raises(Forbidden):
        cell_changes.set_paused(plat.svc, _member(plat, "project-viewer"), cell_id, True)
    stopped = _cell(plat, "down", start=False)
    with pytest.raises(Conflict):
        cell_changes.set_paused(plat.svc, member, stopped, True)
    assert plat.cell(stopped)["state"] != "PAUSED"
