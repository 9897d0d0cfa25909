"""The agent protocol in `services.hosts`: register, assignments (full and delta), apply_status."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from cellplane_platform_support import Platform, event

from cellplane.agent.reconcile import parse_time
from cellplane.errors import NotFound, Unauthorized, ValidationFailed
from cellplane.ids import utcnow
from cellplane.services import hosts
from cellplane.state.models import Cell, Host, Task


def _placed(plat: Platform, name: str, **body: object) -> str:
    r = plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    plat.schedule()
    return str(r.json()["entity"]["id"])


def _body(plat: Platform, name: str = "host-1", **over: object) -> dict[str, object]:
    return {
        "api_version": "agent/v1",
        "join_token": plat.join_token,
        "name": name,
        "capacity": {"cpu": 4, "memory_mb": 2048, "disk_gb": 10},
        **over,
    }


def test_register_same_name_keeps_the_id_and_rotates_the_token(plat: Platform) -> None:
    again = hosts.register(plat.svc, _body(plat)).model_dump()
    assert again["host_id"] == plat.host_id
    assert again["host_token"] != plat.host_token
    # The old token no longer works, the new one does.
    with pytest.raises(Unauthorized):
        hosts.authenticate_host(plat.svc, plat.host_id, plat.host_token)
    p = hosts.authenticate_host(plat.svc, plat.host_id, again["host_token"])
    assert p.roles == ("agent",) and p.subject == plat.host_id
    # New capacity is recorded.
    assert hosts.get_host(plat.svc, plat.host_id)["capacity"]["memory_mb"] == 2048


def test_register_refuses_a_wrong_join_token_and_bad_bodies(plat: Platform) -> None:
    with pytest.raises(Unauthorized):
        hosts.register(plat.svc, _body(plat, "host-2", join_token="cpj_wrong")).model_dump()
    with pytest.raises(ValidationFailed) as e:
        hosts.register(plat.svc, _body(plat, "host-2", capacity={"cpu": 1})).model_dump()
    assert e.value.errors[0].field.startswith("capacity")
    with pytest.raises(ValidationFailed) as e:
        hosts.register(plat.svc, _body(plat, "")).model_dump()
    assert e.value.errors[0].field == "name"
    assert len(hosts.list_hosts(plat.svc)) == 1


def test_new_host_is_ready_with_revision_above_zero(plat: Platform) -> None:
    h = hosts.get_host(plat.svc, plat.host_id)
    assert h["state"] == "READY"
    assert h["capacity"] == {
        "cpu": 8.0,
        "memory_mb": 4096,
        "disk_gb": 100,
        "cores": None,  # this test agent does not say how it counted its cpu
        "cpu_ratio": None,
    }
    assert hosts.current_revision(plat.svc, plat.host_id) >= 1


def test_host_state_follows_heartbeat_age(plat: Platform) -> None:
    with plat.svc.db.session() as s:
        h = s.get(Host, plat.host_id)
        assert h is not None
        h.last_heartbeat = utcnow() - timedelta(seconds=plat.svc.heartbeat_suspect_s + 1)
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "SUSPECT"
    with plat.svc.db.session() as s:
        h = s.get(Host, plat.host_id)
        assert h is not None
        h.last_heartbeat = utcnow() - timedelta(seconds=plat.svc.heartbeat_down_s + 1)
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "DOWN"
    hosts.heartbeat(plat.svc, plat.host_id)
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "READY"


def test_assignments_full_then_delta(plat: Platform) -> None:
    a = _placed(plat, "a")
    b = _placed(plat, "b")
    full = hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")
    assert full["full"] is True
    assert {c["cell_id"] for c in full["cells"]} == {a, b}
    rev = full["revision"]
    delta = hosts.assignments(plat.svc, plat.host_id, rev).model_dump(mode="json")
    assert delta["full"] is False and delta["cells"] == []
    # A revision from the future (a server that lost state) gets the full view again.
    assert (
        hosts.assignments(plat.svc, plat.host_id, rev + 100).model_dump(mode="json")["full"] is True
    )
    cell = full["cells"][0]
    assert cell["image"]["kind"] == "host"
    # The project's default network: its engine-side name as always, its subnet, its driver.
    assert cell["network"]["name"] == hosts.network_name(cell["project_id"])
    assert cell["network"]["driver"] == "bridge"
    assert cell["network"]["subnet"].startswith("10.")
    assert cell["restart"] == {"policy": "never", "max_retries": None}
    assert cell["desired_state"] == "RUNNING"


def test_unknown_hosts_are_not_found(plat: Platform) -> None:
    with pytest.raises(NotFound):
        hosts.assignments(plat.svc, "hst-nope", 0).model_dump(mode="json")
    with pytest.raises(NotFound):
        hosts.current_revision(plat.svc, "hst-nope")
    with pytest.raises(NotFound):
        hosts.set_maintenance(plat.svc, "hst-nope", True)
    with pytest.raises(Unauthorized):
        hosts.authenticate_host(plat.svc, "hst-nope", plat.host_token)


def test_maintenance_by_name_and_back(plat: Platform) -> None:
    assert hosts.set_maintenance(plat.svc, "host-1", True)["state"] == "MAINTENANCE"
    assert hosts.set_maintenance(plat.svc, plat.host_id, False)["state"] == "READY"


def test_apply_status_ignores_cells_of_other_hosts_and_unknown_cells(plat: Platform) -> None:
    cid = _placed(plat, "web")
    other_id = hosts.register(plat.svc, _body(plat, "host-2")).model_dump()["host_id"]
    hosts.apply_status(plat.svc, other_id, [{"cell_id": cid, "state": "RUNNING"}])
    hosts.apply_status(plat.svc, plat.host_id, [{"cell_id": "cel-nope", "state": "RUNNING"}])
    assert plat.cell(cid)["state"] == "SCHEDULED"
    with pytest.raises(NotFound):
        hosts.apply_status(plat.svc, "hst-nope", [])


def test_apply_status_events_advance_the_task(plat: Platform) -> None:
    cid = _placed(plat, "web")
    hosts.apply_status(
        plat.svc,
        plat.host_id,
        [{"cell_id": cid, "state": "CREATING", "events": [event("image-ready")]}],
    )
    with plat.svc.db.reader() as s:
        cell = s.get(Cell, cid)
        assert cell is not None and cell.task_id
        task = s.get(Task, cell.task_id)
        assert task is not None
        assert [st["state"] for st in task.steps] == [
            "COMPLETED",
            "COMPLETED",
            "QUEUED",
            "QUEUED",
            "QUEUED",
        ]
        assert task.progress == 40
    hosts.apply_status(
        plat.svc,
        plat.host_id,
        [
            {
                "cell_id": cid,
                "state": "RUNNING",
                "container_id": "abc",
                "address": "10.89.0.2",
                "exit_code": None,
                "restarts": 0,
                "events": [event("created"), event("started")],
            }
        ],
    )
    view = plat.cell(cid)
    assert view["state"] == "RUNNING"
    assert view["container_id"] == "abc"
    assert view["address"] == "10.89.0.2"
    assert [e["type"] for e in view["events"]][-3:] == ["image-ready", "created", "started"]
    task_view = plat.task(view["task"])
    assert task_view["state"] == "COMPLETED" and task_view["progress"] == 100


def test_apply_status_failed_fails_the_task_with_the_message(plat: Platform) -> None:
    cid = _placed(plat, "web")
    hosts.apply_status(
        plat.svc,
        plat.host_id,
        [{"cell_id": cid, "state": "FAILED", "message": "no such image: x"}],
    )
    view = plat.cell(cid)
    assert view["state"] == "FAILED"
    assert view["message"] == "no such image: x"
    task = plat.task(view["task"])
    assert task["state"] == "ERROR" and task["error"] == "no such image: x"


def test_apply_status_removed_forgets_the_cell(plat: Platform) -> None:
    cid = _placed(plat, "web")
    r = plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin)
    assert r.status_code == 202
    task_id = r.json()["id"]
    hosts.apply_status(
        plat.svc,
        plat.host_id,
        [{"cell_id": cid, "removed": True, "events": [event("stopped"), event("removed")]}],
    )
    assert plat.client.get(f"/v1/cells/{cid}", headers=plat.admin).status_code == 404
    assert plat.task(task_id)["state"] == "COMPLETED"


def test_volume_removed_report_drops_a_deleting_volume(plat: Platform) -> None:
    r = plat.client.post("/v1/projects/default/volumes", json={"name": "data"}, headers=plat.admin)
    vid = r.json()["id"]
    cid = _placed(plat, "db", volumes=[{"volume": "data", "path": "/data"}])
    assert plat.client.get(f"/v1/volumes/{vid}", headers=plat.admin).json()["host"] == plat.host_id
    assert plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).status_code == 202
    hosts.apply_status(plat.svc, plat.host_id, [{"cell_id": cid, "removed": True}])
    rev = hosts.current_revision(plat.svc, plat.host_id)
    assert plat.client.delete(f"/v1/volumes/{vid}", headers=plat.admin).status_code == 204
    a = hosts.assignments(plat.svc, plat.host_id, rev).model_dump(mode="json")
    assert a["revision"] == rev + 1
    assert a["volumes"] == [{"volume_id": vid, "engine_name": f"cp-{vid}", "state": "DELETING"}]
    hosts.apply_status(plat.svc, plat.host_id, [{"volume_removed": vid}])
    assert hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")["volumes"] == []


def test_restart_request_time_survives_a_non_utc_agent(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent compares `restart_requested_at` with engine timestamps as absolute instants.

    It must carry its UTC offset: a naive string is read by `parse_time` in the agent's local
    zone, so on a host outside UTC a restart request would look hours old (never honoured) or
    hours in the future (restart on every pass).
    """
    cid = _placed(plat, "web")
    before = time.time()
    assert plat.client.post(f"/v1/cells/{cid}/restart", headers=plat.admin).status_code == 202
    (cell,) = hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")["cells"]
    stamp = cell["restart_requested_at"]
    with monkeypatch.context() as m:
        m.setenv("TZ", "JST-9")  # UTC+9, as a POSIX TZ string: no zoneinfo needed
        time.tzset()
        try:
            parsed = parse_time(stamp)
        finally:
            m.undo()
            time.tzset()
    assert parsed is not None
    assert abs(parsed - before) < 60, f"{stamp!r} read as {parsed - before:+.0f} s from now"


def test_a_long_poll_checks_the_host_token_and_reads_the_revision_at_once(plat: Platform) -> None:
    rev = hosts.current_revision(plat.svc, plat.host_id)
    assert hosts.authenticated_revision(plat.svc, plat.host_id, plat.host_token) == rev
    _placed(plat, "web")  # the host's revision moves
    assert hosts.authenticated_revision(plat.svc, plat.host_id, plat.host_token) == rev + 1
    with pytest.raises(Unauthorized):
        hosts.authenticated_revision(plat.svc, plat.host_id, plat.host_token + "x")
    with pytest.raises(Unauthorized):  # an unknown host is no different from a wrong token
        hosts.authenticated_revision(plat.svc, "hst-nope", plat.host_token)
    with pytest.raises(NotFound):  # its certificate was checked: the host is gone
        hosts.authenticated_revision(plat.svc, "hst-nope", None)
    r = plat.client.get(
        f"/v1/agent/hosts/{plat.host_id}/assignments",
        params={"revision": 0, "wait": 0},
        headers={"Authorization": "Bearer wrong"},
    )
    assert r.status_code == 401


def test_a_stop_timeout_holds_for_its_request_only(plat: Platform) -> None:
    """`docker stop -t 0` / `rm -f` (and the REST stop's `timeout`) set that stop's grace period:
    the agent gets it, but the cell keeps its own for every later stop (it used to be overwritten)."""
    cid = _placed(plat, "graceful", stop_timeout=25)

    def sent() -> float:
        (cell,) = [c for c in plat.assignments()["cells"] if c["cell_id"] == cid]
        return float(cell["stop_timeout"])

    def post(action: str, **body: object) -> None:
        r = plat.client.post(f"/v1/cells/{cid}/{action}", json=body, headers=plat.admin)
        assert r.status_code == 202, r.text

    assert sent() == 25.0
    post("stop", timeout=0)
    assert sent() == 0.0
    assert plat.cell(cid)["stop_timeout"] == 25.0  # the cell's own is untouched
    post("start")
    assert sent() == 25.0
    post("restart", timeout=3)
    assert sent() == 3.0
    post("stop")  # no timeout: the cell's own again
    assert sent() == 25.0
    post("stop", timeout=0)
    r = plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin)
    assert r.status_code == 202, r.text
    assert sent() == 0.0, "a delete keeps the grace period of the stop under way"
