"""Engine health and report merging in `services.hosts` (issue 18).

A host whose engine is down takes no new cells and says why; a report never erases a failure with
"no news"; a cell that ended (container removed outside Cellplane, policy keeps it down) keeps that
end in `ended_at` for the agent's next full view.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cellplane_platform_support import Platform

from cellplane.ids import utcnow
from cellplane.services import hosts
from cellplane.state.models import Host

DOWN = {"state": "DOWN", "message": "podman service process died (killed by signal 9)"}


def _placed(plat: Platform, name: str, **body: object) -> str:
    r = plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    plat.schedule()
    return str(r.json()["entity"]["id"])


# --- merge_report (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "message", "report", "expected"),
    [
        # The case: a later pass says CREATING (no container yet) and clears nothing.
        ("FAILED", "engine unreachable", {"state": "CREATING"}, ("FAILED", "engine unreachable")),
        ("FAILED", "x", {"state": "CREATING", "restarts": 0}, ("FAILED", "x")),
        # Real news replaces the failure.
        ("FAILED", "x", {"state": "RUNNING", "container_id": "c1"}, ("RUNNING", None)),
        ("FAILED", "x", {"state": "STOPPED"}, ("STOPPED", None)),  # a stop reached its goal
        ("FAILED", "x", {"state": "FAILED", "message": "y"}, ("FAILED", "y")),
        # A start that failed leaves a created container: STARTING is no news either.
        ("FAILED", "x", {"state": "STARTING", "container_id": "c1"}, ("FAILED", "x")),
        # A message stays while nothing changes, and goes when the state moves on.
        ("CREATING", "waiting", {"state": "CREATING"}, ("CREATING", "waiting")),
        ("CREATING", "waiting", {"state": "RUNNING"}, ("RUNNING", None)),
        ("RUNNING", None, {"state": "EXITED", "exit_code": 1}, ("EXITED", None)),
        (
            "RUNNING",
            None,
            {"state": "FAILED", "message": "gone", "ended": True},
            ("FAILED", "gone"),
        ),
        ("RUNNING", None, {}, ("RUNNING", None)),
    ],
)
def test_merge_report(
    state: str, message: str | None, report: dict[str, Any], expected: tuple[str, str | None]
) -> None:
    assert hosts.merge_report(state, message, report) == expected


def test_a_failed_cell_keeps_its_state_and_message_through_later_reports(plat: Platform) -> None:
    cid = _placed(plat, "web")
    failure = "container engine unreachable: connection refused"
    hosts.apply_status(plat.svc, plat.host_id, [{"cell_id": cid, "state": "CREATING"}])
    hosts.apply_status(
        plat.svc, plat.host_id, [{"cell_id": cid, "state": "FAILED", "message": failure}]
    )
    for _ in range(2):
        hosts.apply_status(
            plat.svc, plat.host_id, [{"cell_id": cid, "state": "CREATING", "restarts": 0}]
        )
    view = plat.cell(cid)
    assert (view["state"], view["message"]) == ("FAILED", failure)
    hosts.apply_status(
        plat.svc,
        plat.host_id,
        [{"cell_id": cid, "state": "RUNNING", "container_id": "c1", "address": "10.89.0.2"}],
    )
    view = plat.cell(cid)
    assert (view["state"], view["message"]) == ("RUNNING", None)


# --- engine health ----------------------------------------------------------------------------


def test_a_host_whose_engine_is_down_takes_no_new_cells_and_says_why(plat: Platform) -> None:
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": DOWN}])
    h = hosts.get_host(plat.svc, plat.host_id)
    assert h["state"] == "SUSPECT"
    assert "container engine down" in h["state_reason"]
    assert "killed by signal 9" in h["state_reason"]
    assert h["engine"]["state"] == "DOWN" and h["engine"]["since"]
    assert hosts.list_hosts(plat.svc)[0]["state_reason"] == h["state_reason"]
    # Admission refuses a cell nobody can take now (as for any host that is not READY)...
    r = plat.create_cell("late")
    assert r.status_code == 409, r.text
    assert "READY" in r.json()["detail"]
    # ...and the scheduler places nothing there.
    with plat.svc.db.session() as s:
        host = s.get(Host, plat.host_id)
        assert host is not None
        host.engine_state = "UP"
    cid = str(plat.create_cell("queued").json()["entity"]["id"])
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": DOWN}])
    plat.schedule()
    assert plat.cell(cid)["host"] is None
    # Back: READY again, the outage counted, the last failure kept for the operator.
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": {"state": "UP", "restarts": 1}}])
    h = hosts.get_host(plat.svc, plat.host_id)
    assert (h["state"], h["state_reason"]) == ("READY", None)
    assert h["engine"]["state"] == "UP" and h["engine"]["outages"] == 1
    assert "killed by signal 9" in h["engine"]["message"]
    plat.schedule()
    assert plat.cell(cid)["host"] == plat.host_id


def test_engine_back_wakes_the_controller(plat: Platform) -> None:
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": DOWN}])
    seen = plat.svc.notifier.version("controller")
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": {"state": "UP"}}])
    assert plat.svc.notifier.version("controller") > seen


def test_heartbeat_staleness_wins_over_engine_health(plat: Platform) -> None:
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": DOWN}])
    with plat.svc.db.session() as s:
        h = s.get(Host, plat.host_id)
        assert h is not None
        h.last_heartbeat = utcnow() - timedelta(seconds=plat.svc.heartbeat_down_s + 1)
    shown = hosts.get_host(plat.svc, plat.host_id)
    assert shown["state"] == "DOWN" and "no heartbeat" in shown["state_reason"]


def test_registering_agent_reports_its_engine(plat: Platform) -> None:
    hosts.apply_status(plat.svc, plat.host_id, [{"engine": DOWN}])
    body = {
        "api_version": "agent/v1",
        "join_token": plat.join_token,
        "name": "host-1",
        "capacity": {"cpu": 8, "memory_mb": 4096, "disk_gb": 100},
        "engine": {"state": "UP"},
    }
    hosts.register(plat.svc, body).model_dump()
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "READY"


# --- cells that ended -------------------------------------------------------------------------


def test_an_ended_cell_is_remembered_in_its_assignment(plat: Platform) -> None:
    cid = _placed(plat, "web")
    hosts.apply_status(
        plat.svc, plat.host_id, [{"cell_id": cid, "state": "RUNNING", "container_id": "c1"}]
    )
    (cell,) = hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")["cells"]
    assert cell["ended_at"] is None
    gone = "its container was removed outside Cellplane (restart policy never): the cell ends"
    hosts.apply_status(
        plat.svc,
        plat.host_id,
        [{"cell_id": cid, "state": "FAILED", "message": gone, "ended": True}],
    )
    view = plat.cell(cid)
    assert (view["state"], view["message"]) == ("FAILED", gone)
    (cell,) = hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")["cells"]
    assert cell["ended_at"] is not None
    # Started again and running: no longer ended.
    hosts.apply_status(
        plat.svc, plat.host_id, [{"cell_id": cid, "state": "RUNNING", "container_id": "c2"}]
    )
    (cell,) = hosts.assignments(plat.svc, plat.host_id, 0).model_dump(mode="json")["cells"]
    assert cell["ended_at"] is None
