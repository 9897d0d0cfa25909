"""Failover off a DOWN host, fencing on its return, `cell move` and `host drain`, driven by hand
(no controller loop) on the in-process server with two registered hosts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import event, select

from cellplane.ids import utcnow
from cellplane.services import hosts, moves
from cellplane.services.failover_memo import FailoverMemo
from cellplane.state.models import Cell, Host


@dataclass
class Two:
    plat: Platform
    h1: str
    h2: str
    t2: str


@pytest.fixture
def two(plat: Platform) -> Two:
    h2, t2 = plat.register_host("host-2")
    return Two(plat, plat.host_id, h2, t2)


def _maintenance(plat: Platform, host_id: str, on: bool) -> None:
    r = plat.client.post(
        f"/v1/hosts/{host_id}/maintenance", json={"enabled": on}, headers=plat.admin
    )
    assert r.status_code == 200, r.text


def _on_h1(two: Two, name: str, **body: Any) -> str:
    """A cell placed on host-1 (host-2 in maintenance meanwhile)."""
    _maintenance(two.plat, two.h2, True)
    r = two.plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    two.plat.schedule()
    _maintenance(two.plat, two.h2, False)
    cid = str(r.json()["entity"]["id"])
    assert two.plat.cell(cid)["host"] == two.h1
    return cid


def _lose(plat: Platform, host_id: str) -> None:
    """The host's heartbeats stopped long ago (the last one written, and the last one heard)."""
    long_ago = utcnow() - timedelta(seconds=plat.svc.heartbeat_down_s + 5)
    with plat.svc.db.session() as s:
        h = s.get(Host, host_id)
        assert h is not None
        h.last_heartbeat = long_ago
    plat.svc.heartbeats.written(host_id, long_ago)


def _report(plat: Platform, host_id: str, token: str, *items: dict[str, Any]) -> None:
    r = plat.client.post(
        f"/v1/agent/hosts/{host_id}/status",
        json={"api_version": "agent/v1", "cells": list(items)},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 204, r.text


def _host(plat: Platform, host_id: str) -> dict[str, Any]:
    return hosts.get_host(plat.svc, host_id)


def _events(plat: Platform, cid: str) -> list[tuple[str, str]]:
    return [(e["type"], e["message"]) for e in plat.cell(cid)["events"]]


# --- failover ----------------------------------------------------------------------------------


def test_cells_of_a_down_host_are_rescheduled_on_a_ready_one(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web", restart={"policy": "always"})
    _lose(plat, two.h1)
    topics = moves.fail_over(plat.svc, utcnow())
    assert f"cell:{cid}" in topics and f"host:{two.h1}" in topics
    cell = plat.cell(cid)
    assert cell["host"] is None and cell["state"] == "PENDING" and cell["generation"] == 2
    (kind, why) = _events(plat, cid)[-1]
    assert kind == "failover"
    assert why.startswith("host host-1 is DOWN (no heartbeat for ")
    assert "rescheduling on a READY host (generation 2)" in why
    plat.schedule()
    cell = plat.cell(cid)
    assert cell["host"] == two.h2
    assert _events(plat, cid)[-1] == ("scheduled", f"on {two.h2}")
    a = hosts.assignments(plat.svc, two.h2, 0)
    assert [(c.cell_id, c.generation) for c in a.cells] == [(cid, 2)]
    # A second pass finds nothing more to move.
    assert moves.fail_over(plat.svc, utcnow()) == set()


def test_failover_respects_anti_affinity(two: Two) -> None:
    plat = two.plat
    h3, _ = plat.register_host("host-3")
    web = {"app": "web"}
    anti = [{"selector": web, "anti": True}]
    _maintenance(plat, h3, True)
    a = _on_h1(two, "web-a", labels=web, affinity=anti, restart={"policy": "always"})
    # web-b lands on host-2 (host-1 runs a web cell), host-3 still in maintenance.
    r = plat.create_cell("web-b", labels=web, affinity=anti, restart={"policy": "always"})
    assert r.status_code == 202, r.text
    plat.schedule()
    b = str(r.json()["entity"]["id"])
    assert plat.cell(b)["host"] == two.h2
    _maintenance(plat, h3, False)
    with plat.svc.db.session() as s:  # host-3 is the fullest: spread alone would pick host-2
        h = s.get(Host, h3)
        assert h is not None
        h.cpu = 1.0  # 0.625 of it after placement, against 0.375 on host-2
    _lose(plat, two.h1)
    moves.fail_over(plat.svc, utcnow())
    plat.schedule()
    assert plat.cell(a)["host"] == h3


def test_a_volume_on_a_down_host_is_shown_unavailable_with_the_reason(two: Two) -> None:
    plat = two.plat
    r = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "data", "size_gb": 1}, headers=plat.admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["available"] is True and r.json()["unavailable_reason"] is None
    vid = r.json()["id"]
    _on_h1(two, "db", volumes=[{"volume": "data", "path": "/data"}])
    _lose(plat, two.h1)
    v = plat.client.get(f"/v1/volumes/{vid}", headers=plat.admin).json()
    assert v["available"] is False
    assert v["unavailable_reason"].startswith("its host host-1 is DOWN (no heartbeat for ")


def test_on_failure_moves_too_but_never_stays_with_the_reason(two: Two) -> None:
    plat = two.plat
    moving = _on_h1(two, "worker", restart={"policy": "on-failure", "max_retries": 3})
    staying = _on_h1(two, "batch")  # restart policy never
    _lose(plat, two.h1)
    moves.fail_over(plat.svc, utcnow())
    assert plat.cell(moving)["host"] is None
    cell = plat.cell(staying)
    assert cell["host"] == two.h1 and cell["generation"] == 1
    assert cell["message"].endswith("restart policy never: not moved")
    moves.fail_over(plat.svc, utcnow())
    assert [k for k, _ in _events(plat, staying)].count("host-down") == 1  # said once


def test_a_cell_whose_volume_is_on_the_down_host_stays_unavailable(two: Two) -> None:
    plat = two.plat
    r = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "data", "size_gb": 1}, headers=plat.admin
    )
    assert r.status_code == 201, r.text
    cid = _on_h1(
        two, "db", restart={"policy": "always"}, volumes=[{"volume": "data", "path": "/data"}]
    )
    _lose(plat, two.h1)
    moves.fail_over(plat.svc, utcnow())
    cell = plat.cell(cid)
    assert cell["host"] == two.h1 and cell["generation"] == 1
    assert cell["message"].endswith(
        "the cell stays: its volume 'data' lives there: unavailable until the host is back "
        "(the data is never recreated empty elsewhere)"
    )
    assert _events(plat, cid)[-1][0] == "unavailable"


def test_a_down_host_in_maintenance_or_a_ready_one_is_left_alone(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web", restart={"policy": "always"})
    assert moves.fail_over(plat.svc, utcnow()) == set()  # READY
    _maintenance(plat, two.h1, True)
    _lose(plat, two.h1)
    assert moves.fail_over(plat.svc, utcnow()) == set()
    assert plat.cell(cid)["host"] == two.h1


def test_nothing_moves_while_no_host_is_ready(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web", restart={"policy": "always"})
    _lose(plat, two.h1)
    _lose(plat, two.h2)
    assert moves.fail_over(plat.svc, utcnow()) == set()
    assert plat.cell(cid)["host"] == two.h1


def test_a_controller_that_just_started_waits_for_the_down_threshold(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web", restart={"policy": "always"})
    _lose(plat, two.h1)
    now = utcnow()
    started = now - timedelta(seconds=plat.svc.heartbeat_down_s - 1)
    assert moves.fail_over(plat.svc, now, watching_since=started) == set()
    assert plat.cell(cid)["host"] == two.h1
    started = now - timedelta(seconds=plat.svc.heartbeat_down_s + 1)
    assert f"cell:{cid}" in moves.fail_over(plat.svc, now, watching_since=started)


# --- fencing ---------------------------------------------------------------------------------


def test_a_returning_host_is_not_ready_until_its_agent_confirms_the_fence(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web", restart={"policy": "always"})
    seen = hosts.current_revision(plat.svc, two.h1)
    _lose(plat, two.h1)
    moves.fail_over(plat.svc, utcnow())
    plat.schedule()
    # host-1 comes back: heartbeats again, but it still runs the cell's old container.
    hosts.heartbeat(plat.svc, two.h1)
    h = _host(plat, two.h1)
    assert h["state"] == "SUSPECT"
    assert "fencing" in h["state_reason"]
    # Its agent's next view is full (a delta would not say that the cell left) and without it.
    view = hosts.assignments(plat.svc, two.h1, seen)
    assert view.full and [c.cell_id for c in view.cells] == []
    # A report about the old container does not touch the cell, which runs elsewhere now.
    plat.report({"cell_id": cid, "state": "RUNNING", "container_id": "old"})
    assert plat.cell(cid)["host"] == two.h2 and plat.cell(cid)["container_id"] is None
    # An older view's confirmation is not enough; the current one's is.
    plat.report({"fenced": seen})
    assert _host(plat, two.h1)["state"] == "SUSPECT"
    plat.report({"fenced": view.revision})
    h = _host(plat, two.h1)
    assert h["state"] == "READY" and h["state_reason"] is None
    assert not hosts.assignments(plat.svc, two.h1, view.revision).full


def test_a_report_about_an_older_generation_is_ignored(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web", restart={"policy": "always"})
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-1"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    assert plat.cell(cid)["generation"] == 3
    plat.report({"cell_id": cid, "state": "RUNNING", "container_id": "gen1", "generation": 1})
    assert plat.cell(cid)["container_id"] is None
    plat.report({"cell_id": cid, "state": "RUNNING", "container_id": "gen3", "generation": 3})
    assert plat.cell(cid)["container_id"] == "gen3"


# --- move ------------------------------------------------------------------------------------


def test_move_places_the_cell_on_the_named_host_with_a_new_generation(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "web")
    old_rev = hosts.current_revision(plat.svc, two.h1)
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["kind"] == "MOVE_CELL" and task["steps"][0]["state"] == "COMPLETED"
    cell = plat.cell(cid)
    assert (cell["host"], cell["state"], cell["generation"]) == (two.h2, "SCHEDULED", 2)
    assert _events(plat, cid)[-1][1].startswith("to host-2 from host-1 by ")
    # host-1's agent gets a full view without the cell; host-2's names it, generation 2.
    view = hosts.assignments(plat.svc, two.h1, old_rev)
    assert view.full and view.cells == []
    (moved,) = hosts.assignments(plat.svc, two.h2, 0).cells
    assert (moved.cell_id, moved.generation) == (cid, 2)
    # host-2's agent reports it running: the task completes.
    _report(
        plat,
        two.h2,
        two.t2,
        {"cell_id": cid, "state": "RUNNING", "container_id": "c2", "generation": 2},
    )
    assert plat.task(task["id"])["state"] == "COMPLETED"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"host": "host-9"}, 404, "host 'host-9' does not exist"),
        ({"host": "host-1"}, 409, "already runs on host 'host-1'"),
        ({}, 422, "host"),
        ({"host": "host-2", "extra": 1}, 422, "extra"),
    ],
)
def test_bad_moves_are_refused_and_change_nothing(
    two: Two, body: dict[str, Any], status: int, words: str
) -> None:
    plat = two.plat
    cid = _on_h1(two, "web")
    r = plat.client.post(f"/v1/cells/{cid}/move", json=body, headers=plat.admin)
    assert r.status_code == status, r.text
    assert words in r.text
    cell = plat.cell(cid)
    assert (cell["host"], cell["generation"]) == (two.h1, 1)


def test_move_to_a_host_without_room_names_what_is_short(plat: Platform) -> None:
    plat.register_host("small", cpu=0.5, memory_mb=128)
    r = plat.create_cell("big", cpu=1, memory_mb=512)
    assert r.status_code == 202, r.text
    cid = str(r.json()["entity"]["id"])
    plat.schedule()
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "small"}, headers=plat.admin)
    assert r.status_code == 409, r.text
    assert "cannot move to 'small': needs 1 cpu" in r.text
    assert plat.cell(cid)["host"] == plat.host_id


def _pin(plat: Platform, cid: str, host_id: str) -> None:
    """Make the cell a cluster node's (placed with its cluster's policies, pinned)."""
    with plat.svc.db.session() as s:
        cell = s.get(Cell, cid)
        assert cell is not None
        cell.pinned_host_id = host_id


def test_a_cluster_node_is_not_moved(two: Two) -> None:
    plat = two.plat
    cid = _on_h1(two, "zk-0")
    _pin(plat, cid, two.h1)
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    assert r.status_code == 409, r.text
    assert "cannot move: it is a cluster node" in r.text


# --- drain -----------------------------------------------------------------------------------


def test_drain_moves_every_cell_with_a_step_each_and_completes(two: Two) -> None:
    plat = two.plat
    a = _on_h1(two, "a")
    b = _on_h1(two, "b")
    r = plat.client.post(f"/v1/cells/{b}/stop", headers=plat.admin)
    assert r.status_code == 202, r.text
    plat.report({"cell_id": b, "state": "STOPPED", "container_id": "old-b"})
    r = plat.client.post(f"/v1/hosts/{two.h1}/drain", headers=plat.admin)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["kind"] == "DRAIN_HOST"
    assert [(st["name"], st["state"]) for st in task["steps"]] == [
        ("MAINTENANCE", "COMPLETED"),
        ("MOVE a", "QUEUED"),
        ("MOVE b", "QUEUED"),
    ]
    assert [st.get("cell") for st in task["steps"]] == [None, a, b]
    assert _host(plat, two.h1)["state"] == "MAINTENANCE"
    plat.schedule()
    assert plat.cell(a)["host"] == two.h2
    stopped = plat.cell(b)
    assert (stopped["host"], stopped["state"]) == (None, "STOPPED")  # placed when started
    moves.drain_progress(plat.svc, utcnow())
    view = plat.task(task["id"])
    assert view["progress"] == 66 and view["state"] == "STARTED"
    assert view["steps"][2]["message"] == "stopped: placed on a host when it starts again"
    _report(
        plat,
        two.h2,
        two.t2,
        {"cell_id": a, "state": "RUNNING", "container_id": "ca", "generation": 2},
    )
    assert moves.drain_progress(plat.svc, utcnow()) == {f"task:{task['id']}"}
    done = plat.task(task["id"])
    assert done["state"] == "COMPLETED" and done["progress"] == 100
    assert done["steps"][1]["message"] == "on host-2 (RUNNING)"
    # The stopped cell runs again on a READY host when started.
    r = plat.client.post(f"/v1/cells/{b}/start", headers=plat.admin)
    assert r.status_code == 202, r.text
    plat.schedule()
    assert plat.cell(b)["host"] == two.h2


def test_drain_reports_the_cells_it_cannot_move(two: Two) -> None:
    plat = two.plat
    node = _on_h1(two, "zk-0")
    _pin(plat, node, two.h1)
    r = plat.client.post(f"/v1/hosts/{two.h1}/drain", headers=plat.admin)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["state"] == "ERROR" and task["progress"] == 100
    assert (
        task["error"]
        == "not moved: zk-0 (it is a cluster node, placed with its cluster's policies)"
    )
    assert plat.cell(node)["host"] == two.h1


def test_drain_of_an_unknown_host_is_404_and_needs_hosts_write(two: Two) -> None:
    plat = two.plat
    r = plat.client.post("/v1/hosts/nope/drain", headers=plat.admin)
    assert r.status_code == 404 and "host 'nope' does not exist" in r.text
    r = plat.client.post(f"/v1/hosts/{two.h1}/drain")
    assert r.status_code == 401
    with plat.svc.db.reader() as s:
        assert not s.scalar(select(Host.maintenance).where(Host.id == two.h1))


# --- failover reads a DOWN host's cells once per transition -------------------------------------


class _CellReads:
    """Counts the SELECTs of the cells table on the server's engine."""

    def __init__(self, plat: Platform) -> None:
        self.n = 0
        self._engine = plat.svc.db.engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM cells" in statement:
            self.n += 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


def test_the_cells_of_a_down_host_are_read_once_per_transition(two: Two) -> None:
    plat = two.plat
    staying = _on_h1(two, "batch")  # restart policy never: stays, noted once
    moving = _on_h1(two, "web", restart={"policy": "always"})
    _lose(plat, two.h1)
    memo = FailoverMemo()
    now = utcnow()
    assert f"cell:{moving}" in moves.fail_over(plat.svc, now, memo=memo)
    reads = _CellReads(plat)
    try:
        # Later passes, seconds later (the reason's "no heartbeat for N s" differs each time):
        # the host is unchanged, its cells are not read, nothing is noted again.
        for later in (1, 2, 7):
            assert moves.fail_over(plat.svc, now + timedelta(seconds=later), memo=memo) == set()
        assert reads.n == 0
    finally:
        reads.close()
    assert [k for k, _ in _events(plat, staying)].count("host-down") == 1
    # A change on the host (the staying cell is stopped: its revision moves) is read again.
    r = plat.client.post(f"/v1/cells/{staying}/stop", headers=plat.admin)
    assert r.status_code == 202, r.text
    reads = _CellReads(plat)
    try:
        moves.fail_over(plat.svc, now + timedelta(seconds=8), memo=memo)
        assert reads.n >= 1
    finally:
        reads.close()


def test_a_host_down_again_after_coming_back_is_read_again(two: Two) -> None:
    plat = two.plat
    first = _on_h1(two, "batch")
    _lose(plat, two.h1)
    memo = FailoverMemo()
    now = utcnow()
    moves.fail_over(plat.svc, now, memo=memo)
    assert two.h1 in memo
    hosts.heartbeat(plat.svc, two.h1)  # back: READY
    assert moves.fail_over(plat.svc, utcnow(), memo=memo) == set()
    assert two.h1 not in memo
    _lose(plat, two.h1)  # DOWN again
    later = utcnow() + timedelta(seconds=1)
    moves.fail_over(plat.svc, later, memo=memo)
    assert two.h1 in memo
    assert [k for k, _ in _events(plat, first)].count("host-down") == 2  # once per transition


def test_a_cell_without_a_host_moves_only_where_its_volume_is(two: Two) -> None:
    plat = two.plat
    r = plat.client.post("/v1/projects/default/volumes", json={"name": "data"}, headers=plat.admin)
    assert r.status_code == 201, r.text
    mount = [{"volume": "data", "path": "/data"}]
    _on_h1(two, "a", volumes=mount)  # binds the volume to host-1
    r = plat.create_cell("b", volumes=mount, start=False)  # stopped: not placed
    assert r.status_code == 202, r.text
    cid = str(r.json()["entity"]["id"])
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-2"}, headers=plat.admin)
    # host-2 would get it without its data (it would wait there for ever): refused.
    assert r.status_code == 409, r.text
    assert "cannot move to 'host-2': its volume 'data' is on host host-1" in r.text
    assert plat.cell(cid)["host"] is None
    assert hosts.assignments(plat.svc, two.h2, 0).cells == []
    r = plat.client.post(f"/v1/cells/{cid}/move", json={"host": "host-1"}, headers=plat.admin)
    assert r.status_code == 202, r.text
    (b,) = [c for c in hosts.assignments(plat.svc, two.h1, 0).cells if c.cell_id == cid]
    assert [m.path for m in b.mounts] == ["/data"] and b.pending_volumes == []


def test_a_made_not_started_cell_is_made_again_on_a_ready_host(two: Two) -> None:
    """`docker create`'s cell (desired CREATED) on a DOWN host moves as a running one does: its
    container is made again elsewhere, still not started, and a later start runs it there."""
    from cellplane.services import cells
    from cellplane.services.context import Principal
    from cellplane.services.schemas import CellCreate
    from cellplane.state.models import Project

    plat = two.plat
    with plat.svc.db.reader() as s:
        tenant_id = s.scalar(select(Project.tenant_id).where(Project.name == "default").limit(1))
    assert tenant_id is not None
    member = Principal(
        subject="usr-t", tenant_id=tenant_id, tenant="default", roles=("project-member",)
    )
    spec = CellCreate.model_validate(
        {"name": "made", "image": "host", "start": False, "restart": {"policy": "always"}}
    )
    _maintenance(plat, two.h2, True)
    with plat.svc.db.session() as s:
        cid = str(
            cells.create(plat.svc, s, member, "default", spec, prepare=True).body["entity"]["id"]
        )
    plat.schedule()
    _maintenance(plat, two.h2, False)
    assert plat.cell(cid)["host"] == two.h1
    _lose(plat, two.h1)
    assert f"cell:{cid}" in moves.fail_over(plat.svc, utcnow())
    cell = plat.cell(cid)
    assert cell["host"] is None and cell["state"] == "PENDING" and cell["generation"] == 2
    assert cell["desired_state"] == "CREATED"
    plat.schedule()
    assert plat.cell(cid)["host"] == two.h2
    a = hosts.assignments(plat.svc, two.h2, 0)
    assert [(c.cell_id, c.generation, c.desired_state) for c in a.cells] == [(cid, 2, "CREATED")]
