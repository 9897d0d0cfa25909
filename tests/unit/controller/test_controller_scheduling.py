"""The placement reconciler `schedule_pending`, driven directly (no controller loop)."""

from __future__ import annotations

from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.services import hosts
from cellplane.state.models import CellEvent, Volume


def _create(plat: Platform, name: str, **body: object) -> tuple[str, str]:
    r = plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    return str(r.json()["entity"]["id"]), str(r.json()["id"])


def _events(plat: Platform, cell_id: str, kind: str) -> list[CellEvent]:
    with plat.svc.db.reader() as s:
        q = select(CellEvent).where(CellEvent.cell_id == cell_id, CellEvent.type == kind)
        return list(s.scalars(q))


def test_nothing_pending_is_a_no_op(plat: Platform) -> None:
    rev = hosts.current_revision(plat.svc, plat.host_id)
    assert plat.schedule() == set()
    assert hosts.current_revision(plat.svc, plat.host_id) == rev


def test_pending_cell_is_placed_and_its_task_advances(plat: Platform) -> None:
    cid, tid = _create(plat, "web")
    assert plat.cell(cid)["state"] == "PENDING" and plat.cell(cid)["host"] is None
    rev = hosts.current_revision(plat.svc, plat.host_id)
    topics = plat.schedule()
    assert topics == {f"host:{plat.host_id}", f"task:{tid}", f"cell:{cid}"}
    cell = plat.cell(cid)
    assert cell["host"] == plat.host_id
    assert cell["state"] == "SCHEDULED"
    assert [e["type"] for e in cell["events"]] == ["accepted", "scheduled"]
    assert hosts.current_revision(plat.svc, plat.host_id) == rev + 1
    task = plat.task(tid)
    assert [s["state"] for s in task["steps"]] == [
        "COMPLETED",
        "STARTED",
        "QUEUED",
        "QUEUED",
        "QUEUED",
    ]
    assert task["state"] == "STARTED" and task["progress"] == 20
    # A second pass finds nothing to do and does not move the host.
    assert plat.schedule() == set()
    assert hosts.current_revision(plat.svc, plat.host_id) == rev + 1


def test_one_revision_bump_per_host_per_pass(plat: Platform) -> None:
    ids = [_create(plat, f"c{i}")[0] for i in range(3)]
    rev = hosts.current_revision(plat.svc, plat.host_id)
    plat.schedule()
    assert hosts.current_revision(plat.svc, plat.host_id) == rev + 1
    a = hosts.assignments(plat.svc, plat.host_id, rev).model_dump(mode="json")
    assert {c["cell_id"] for c in a["cells"]} == set(ids)


def test_cells_created_stopped_are_not_placed(plat: Platform) -> None:
    cid, _ = _create(plat, "idle", start=False)
    assert plat.schedule() == set()
    cell = plat.cell(cid)
    assert cell["host"] is None and cell["desired_state"] == "STOPPED"


def test_unplaceable_cells_carry_the_reason_once(plat: Platform) -> None:
    # Admission sees an empty host, so five 1 GB cells are all accepted; only four fit.
    ids = [_create(plat, f"m{i}", cpu=0.5, memory_mb=1024)[0] for i in range(5)]
    plat.schedule()
    cells = [plat.cell(i) for i in ids]
    placed = [c for c in cells if c["host"]]
    waiting = [c for c in cells if not c["host"]]
    assert len(placed) == 4 and len(waiting) == 1
    (w,) = waiting
    assert w["state"] == "PENDING"
    assert "needs 1024 MB memory" in w["message"]
    assert "largest free host has 0 MB" in w["message"]
    task = plat.task(w["task"])
    assert task["steps"][0]["state"] == "STARTED"
    assert "needs 1024 MB memory" in task["steps"][0]["message"]
    plat.schedule()
    assert len(_events(plat, w["id"], "unschedulable")) == 1


def test_maintenance_after_admission_leaves_the_cell_pending(plat: Platform) -> None:
    cid, _ = _create(plat, "web")
    hosts.set_maintenance(plat.svc, plat.host_id, True)
    plat.schedule()
    cell = plat.cell(cid)
    assert cell["host"] is None
    assert "MAINTENANCE" in cell["message"]
    hosts.set_maintenance(plat.svc, plat.host_id, False)
    plat.schedule()
    cell = plat.cell(cid)
    assert cell["host"] == plat.host_id and cell["message"] is None


def test_host_port_taken(plat: Platform) -> None:
    a, _ = _create(plat, "a", ports=[{"container_port": 80, "host_port": 8080}])
    b, _ = _create(plat, "b", ports=[{"container_port": 80, "host_port": 8080}])
    plat.schedule()
    assert plat.cell(a)["host"] == plat.host_id
    cb = plat.cell(b)
    assert cb["host"] is None
    assert "tcp/8080" in cb["message"]


def test_volume_binds_to_the_first_host_and_pins_later_cells(plat: Platform) -> None:
    r = plat.client.post("/v1/projects/default/volumes", json={"name": "data"}, headers=plat.admin)
    assert r.status_code == 201
    vid = r.json()["id"]
    first, _ = _create(plat, "first", volumes=[{"volume": "data", "path": "/data"}])
    plat.schedule()
    with plat.svc.db.reader() as s:
        v = s.get(Volume, vid)
        assert v is not None and v.host_id == plat.host_id
    # A second, bigger host joins; the volume's next user still goes where the volume is.
    other, _ = plat.register_host("host-2", cpu=64, memory_mb=65536)
    second, _ = _create(plat, "second", volumes=[{"volume": "data", "path": "/d"}])
    plat.schedule()
    assert plat.cell(second)["host"] == plat.host_id
    full = hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")
    by_id = {c["cell_id"]: c for c in full["cells"]}
    assert set(by_id) == {first, second}
    (mount,) = by_id[second]["mounts"]
    assert mount == {
        "volume_id": vid,
        "engine_name": f"cp-{vid}",
        "path": "/d",
        "read_only": False,
        "host_path": None,
        "host_root": None,
    }
    assert hosts.assignments(plat.svc, other, 0).cells == []
