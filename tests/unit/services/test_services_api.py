"""Services through the API (in-process server, one registered host, no agent): admission,
validation, quota for the whole change, ownership of the cells, and the reconcile pass."""

from __future__ import annotations

from typing import Any

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import func, select

from cellplane.controller.services import reconcile_services
from cellplane.ids import utcnow
from cellplane.scheduler.service_plan import CellCounts, count_cells
from cellplane.services import service_reconcile
from cellplane.state.models import Cell, Task
from cellplane.state.service_models import REVISION_LABEL, Service

BASE = "/v1/projects/default/services"
TEMPLATE = {"image": "host", "command": ["sleep", "3600"], "cpu": 0.05, "memory_mb": 16}


def _create(plat: Platform, name: str = "web", instances: int = 3, **extra: Any) -> Any:
    body = {"name": name, "template": TEMPLATE, "instances": instances, **extra}
    return plat.client.post(BASE, json=body, headers=plat.admin)


def _show(plat: Platform, name: str = "web") -> dict[str, Any]:
    r = plat.client.get(f"{BASE}/{name}", headers=plat.admin)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _counts(plat: Platform) -> tuple[int, int, int]:
    with plat.svc.db.reader() as s:
        return (
            int(s.scalar(select(func.count(Service.id))) or 0),
            int(s.scalar(select(func.count(Cell.id))) or 0),
            int(s.scalar(select(func.count(Task.id))) or 0),
        )


def _run_all(plat: Platform) -> None:
    """Report every placed, live cell of the host RUNNING (what its agent would do)."""
    plat.schedule()
    with plat.svc.db.reader() as s:
        rows = s.execute(
            select(Cell.id, Cell.generation).where(
                Cell.host_id == plat.host_id, Cell.desired_state == "RUNNING"
            )
        ).all()
    plat.report(*({"cell_id": i, "generation": g, "state": "RUNNING"} for i, g in rows))


def test_create_admits_every_cell_named_labelled_and_spread(plat: Platform) -> None:
    r = _create(plat, instances=3)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["kind"] == "CREATE_SERVICE" and task["entity"]["kind"] == "service"
    shown = _show(plat)
    assert shown["instances"] == 3 and shown["revision"] == 1
    assert sorted(c["name"] for c in shown["cells"]) == ["web-1", "web-2", "web-3"]
    cell = plat.cell(shown["cells"][0]["id"])
    assert cell["labels"]["service"] == "web"
    assert {"selector": {"cellplane.service": shown["id"]}, "anti": True, "soft": True} in cell[
        "affinity"
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"instances": -1}, "instances"),
        ({"instances": 1001}, "instances"),
        ({"instances": "many"}, "instances"),
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 57}, "name"),
        ({"template": {**TEMPLATE, "cpu": -1}}, "cpu"),
        ({"template": {**TEMPLATE, "name": "web-1"}}, "template"),
        ({"template": {**TEMPLATE, "bogus": 1}}, "bogus"),
        ({"template": {"command": ["true"]}}, "image"),
        ({"update": {"max_unavailable": 0, "max_surge": 0}}, "update"),
        ({"update": {"max_surge": -1}}, "max_surge"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    plat: Platform, change: dict[str, Any], field: str
) -> None:
    before = _counts(plat)
    body = {"name": "web", "template": TEMPLATE, "instances": 2, **change}
    r = plat.client.post(BASE, json=body, headers=plat.admin)
    assert r.status_code == 422, r.text
    assert field in r.text, r.text
    assert _counts(plat) == before


@pytest.mark.parametrize(
    ("tpl", "field"),
    [
        ({**TEMPLATE, "image": "no-such-image"}, "image"),
        ({**TEMPLATE, "flavor": "HUGE-NOPE", "cpu": None, "memory_mb": None}, "flavor"),
        ({**TEMPLATE, "network": "nonet"}, "network"),
    ],
)
def test_a_template_the_cells_cannot_use_is_refused_whole(
    plat: Platform, tpl: dict[str, Any], field: str
) -> None:
    before = _counts(plat)
    r = plat.client.post(
        BASE, json={"name": "web", "template": tpl, "instances": 3}, headers=plat.admin
    )
    assert r.status_code in (404, 422), r.text
    assert field in r.text, r.text
    assert _counts(plat) == before


def test_quota_is_checked_for_the_whole_change_and_refusal_changes_nothing(
    plat: Platform,
) -> None:
    r = plat.client.put("/v1/projects/default/quota", json={"cells": 4}, headers=plat.admin)
    assert r.status_code == 200, r.text
    before = _counts(plat)
    r = _create(plat, instances=5)
    assert r.status_code == 409, r.text
    assert "cells quota" in r.text and "service 'web' needs 5" in r.text, r.text
    assert _counts(plat) == before
    assert _create(plat, instances=3).status_code == 202
    r = plat.client.post(f"{BASE}/web/scale", json={"instances": 6}, headers=plat.admin)
    assert "cells quota" in r.text and "needs 3 more" in r.text, r.text
    assert len(_show(plat)["cells"]) == 3 and _show(plat)["instances"] == 3


def test_a_service_cell_is_refused_to_cell_rm_and_deleted_with_its_service(
    plat: Platform,
) -> None:
    assert _create(plat, instances=2).status_code == 202
    cell_id = _show(plat)["cells"][0]["id"]
    r = plat.client.delete(f"/v1/cells/{cell_id}", headers=plat.admin)
    assert r.status_code == 409, r.text
    assert "service 'web'" in r.json()["detail"] and "cellplane service scale web" in r.text
    r = plat.client.delete(f"{BASE}/web", headers=plat.admin)
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    # Placed at admission (one batch): the row stays until the host confirms the removals.
    reconcile_services(plat.svc)
    assert _show(plat)["state"] == "DELETING"
    with plat.svc.db.reader() as s:
        rows = s.execute(select(Cell.id, Cell.generation)).all()
    assert len(rows) == 2
    plat.report(*({"cell_id": i, "generation": g, "removed": True} for i, g in rows))
    reconcile_services(plat.svc)
    assert plat.client.get(f"{BASE}/web", headers=plat.admin).status_code == 404
    assert _counts(plat)[:2] == (0, 0)
    assert plat.task(task_id)["state"] == "COMPLETED"


def test_scale_up_and_down_then_ready(plat: Platform) -> None:
    assert _create(plat, instances=2).status_code == 202
    _run_all(plat)
    reconcile_services(plat.svc)
    shown = _show(plat)
    assert shown["state"] == "READY" and shown["ready"] == 2
    assert shown["task"]["state"] == "COMPLETED"
    r = plat.client.post(f"{BASE}/web/scale", json={"instances": 5}, headers=plat.admin)
    assert r.status_code == 202, r.text
    assert [c["name"] for c in _show(plat)["cells"]] == [f"web-{i}" for i in range(1, 6)]
    _run_all(plat)
    reconcile_services(plat.svc)
    assert _show(plat)["state"] == "READY"
    r = plat.client.post(f"{BASE}/web/scale", json={"instances": 1}, headers=plat.admin)
    assert r.status_code == 202, r.text
    live = [c for c in _show(plat)["cells"] if c["desired_state"] != "DELETED"]
    assert [c["name"] for c in live] == ["web-1"]  # the highest numbers go first


def test_a_failed_cell_is_replaced_by_the_reconcile_pass(plat: Platform) -> None:
    assert _create(plat, instances=2).status_code == 202
    _run_all(plat)
    reconcile_services(plat.svc)
    victim = _show(plat)["cells"][0]
    plat.report({"cell_id": victim["id"], "state": "FAILED", "ended": True})
    assert reconcile_services(plat.svc) == 1
    live = [c for c in _show(plat)["cells"] if c["desired_state"] != "DELETED"]
    assert victim["id"] not in {c["id"] for c in live}
    assert sorted(c["name"] for c in live) == ["web-2", "web-3"]


def test_rolling_update_respects_its_bounds_until_every_cell_is_new(plat: Platform) -> None:
    r = _create(plat, instances=4, update={"max_unavailable": 1, "max_surge": 1})
    assert r.status_code == 202, r.text
    _run_all(plat)
    reconcile_services(plat.svc)
    r = plat.client.post(
        f"{BASE}/web/update",
        json={"template": {**TEMPLATE, "env": {"V": "2"}}},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    for _ in range(20):
        shown = _show(plat)
        live = [c for c in shown["cells"] if c["desired_state"] != "DELETED"]
        running = [c for c in live if c["state"] == "RUNNING"]
        assert len(running) >= 3 and len(live) <= 5, shown["cells"]
        if plat.task(task_id)["state"] == "COMPLETED":
            break
        _run_all(plat)
        reconcile_services(plat.svc)
    shown = _show(plat)
    assert shown["state"] == "READY" and shown["revision"] == 2
    live = [c for c in shown["cells"] if c["desired_state"] != "DELETED"]
    assert len(live) == 4 and {c["revision"] for c in live} == {2}
    assert plat.task(task_id)["state"] == "COMPLETED"


def test_names_taken_by_hand_are_skipped_and_unknown_services_404(plat: Platform) -> None:
    assert plat.create_cell("web-1").status_code == 202
    assert _create(plat, instances=1).status_code == 202
    assert [c["name"] for c in _show(plat)["cells"]] == ["web-2"]
    assert _create(plat, instances=1).status_code == 409
    for path in (f"{BASE}/nope", f"{BASE}/nope/scale"):
        r = (plat.client.get if path.endswith("nope") else plat.client.post)(
            path,
            headers=plat.admin,
            **({} if path.endswith("nope") else {"json": {"instances": 1}}),
        )
        assert r.status_code == 404 and "service 'nope'" in r.text, r.text


def test_the_service_task_names_its_service_and_a_new_change_supersedes_it(
    plat: Platform,
) -> None:
    first = _create(plat, instances=1).json()
    shown = plat.task(first["id"])
    assert shown["entity"] == {"kind": "service", "id": _show(plat)["id"], "name": "web"}
    r = plat.client.post(f"{BASE}/web/scale", json={"instances": 2}, headers=plat.admin)
    assert r.status_code == 202, r.text
    old = plat.task(first["id"])
    assert old["state"] == "ERROR" and "superseded by SCALE_SERVICE" in old["error"]
    assert _show(plat)["task"]["id"] == r.json()["id"]


def test_a_settled_service_costs_its_pass_no_write_and_wakes_nothing(plat: Platform) -> None:
    assert _create(plat, instances=2).status_code == 202
    _run_all(plat)
    reconcile_services(plat.svc)
    assert _show(plat)["state"] == "READY"
    seen = plat.svc.notifier.version("controller")
    with plat.svc.db.reader() as s:
        before = s.scalar(select(Service.updated_at))
    assert reconcile_services(plat.svc) == 0
    assert plat.svc.notifier.version("controller") == seen
    with plat.svc.db.reader() as s:
        assert s.scalar(select(Service.updated_at)) == before


def test_cells_spread_across_hosts_by_default_and_share_one_when_they_must(
    plat: Platform,
) -> None:
    plat.register_host("host-2")
    # Even under binpack (which fills one host first), the soft anti-affinity spreads them.
    tpl = {**TEMPLATE, "placement": "binpack"}
    r = plat.client.post(
        BASE, json={"name": "web", "template": tpl, "instances": 2}, headers=plat.admin
    )
    assert r.status_code == 202, r.text
    plat.schedule()
    hosts = [c["host_id"] for c in _show(plat)["cells"]]
    assert None not in hosts and len(set(hosts)) == 2, hosts
    # Soft: a third cell still goes somewhere (two hosts, three cells).
    assert plat.client.post(f"{BASE}/web/scale", json={"instances": 3}, headers=plat.admin)
    plat.schedule()
    assert None not in [c["host_id"] for c in _show(plat)["cells"]]


def test_a_null_template_name_is_no_name_and_a_given_one_is_refused(plat: Platform) -> None:
    body = {"template": {**TEMPLATE, "name": None}, "instances": 1}
    assert _create(plat, **body).status_code == 202
    r = plat.client.post(
        f"{BASE}/web/update", json={"template": {**TEMPLATE, "name": "x"}}, headers=plat.admin
    )
    assert r.status_code == 422 and "template has no name" in r.text, r.text
    r = plat.client.post(
        f"{BASE}/web/update", json={"template": {**TEMPLATE, "name": None}}, headers=plat.admin
    )
    assert r.status_code == 202, r.text


def test_the_sql_count_of_a_service_is_the_count_of_its_cells(plat: Platform) -> None:
    assert _create(plat, instances=6).status_code == 202
    assert _create(plat, name="web-x", instances=2).status_code == 202  # "web-x-1" is LIKE web-%
    r = plat.client.post(  # named like the service by hand: not one of its cells
        "/v1/projects/default/cells",
        json={"name": "web-99", **TEMPLATE},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    with plat.svc.db.session() as s:
        service = s.scalar(select(Service).where(Service.name == "web"))
        assert service is not None
        cells = sorted(service_reconcile.cells_of(s, service), key=lambda c: c.name)
        cells[0].state = "RUNNING"
        cells[1].state = "RUNNING"
        cells[1].ended_at = utcnow()  # its container ended: broken
        cells[2].state = "FAILED"
        cells[3].desired_state = "DELETED"
        cells[4].labels = {**cells[4].labels, REVISION_LABEL: "7"}  # an older revision
        cells[5].state = "RUNNING"
    for revision, want in (
        (1, CellCounts(live=5, broken=2, old=1, ready=2)),
        (7, CellCounts(live=5, broken=2, old=2, ready=0)),
    ):
        with plat.svc.db.reader() as s, s.no_autoflush:
            service = s.scalar(select(Service).where(Service.name == "web"))
            assert service is not None
            service.revision = revision  # not flushed: the reader is rolled back
            counted = service_reconcile.count_of(s, service)
            expected = count_cells(service_reconcile.observed(s, service), revision)
        assert counted == expected == want


def test_a_starting_service_whose_cells_did_not_change_costs_no_write(plat: Platform) -> None:
    assert _create(plat, instances=3).status_code == 202
    plat.schedule()
    assert reconcile_services(plat.svc) == 0  # records 0/3 ready on its task
    with plat.svc.db.reader() as s:
        task = s.scalar(select(Task).where(Task.kind == "CREATE_SERVICE"))
        assert task is not None and task.state == "STARTED"
        seen = (task.progress, task.steps)
        service = s.scalar(select(Service))
        assert service is not None
        # Steady (its 3 cells, none ready yet, nothing to change since the last pass).
        assert service_reconcile.is_settled(s, service, utcnow())
    with plat.svc.db.reader() as s:
        one = s.scalar(select(Cell.id).order_by(Cell.name).limit(1))
        gen = s.scalar(select(Cell.generation).where(Cell.id == one))
    plat.report({"cell_id": one, "generation": gen, "state": "RUNNING"})
    with plat.svc.db.reader() as s:
        service = s.scalar(select(Service))
        assert service is not None
        assert not service_reconcile.is_settled(s, service, utcnow())  # 1/3 ready to record
    reconcile_services(plat.svc)
    with plat.svc.db.reader() as s:
        task = s.scalar(select(Task).where(Task.kind == "CREATE_SERVICE"))
        assert task is not None and (task.progress, task.steps) != seen
        assert task.progress == 33
