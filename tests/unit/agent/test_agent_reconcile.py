"""The agent's pure reconcile: (desired, observed, orphans, memory, now) -> actions."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from cellplane.agent.reconcile import (
    BACKOFF_CAP_S,
    BACKOFF_START_S,
    STABLE_S,
    Action,
    Memory,
    backoff,
    is_ended,
    observed_state,
    parse_time,
    reconcile,
)
from cellplane.drivers.base import ContainerInfo
from cellplane.wire.agent_plain import CellAssignment, ImageRef, NetworkDescription, RestartPolicy

CID = "cel-1"
NOW = 1_000_000.0


def cell(
    desired: str = "RUNNING",
    policy: str = "never",
    max_retries: int | None = None,
    restarts: int = 0,
    restart_requested_at: str | None = None,
    cell_id: str = CID,
) -> CellAssignment:
    return CellAssignment(
        cell_id=cell_id,
        name=cell_id,
        project_id="prj-1",
        network=NetworkDescription(name="cp-prj-1"),
        image=ImageRef(id="img-1", kind="archive"),
        cpu=1,
        memory_mb=64,
        desired_state=desired,
        restart=RestartPolicy(policy=policy, max_retries=max_retries),
        restarts=restarts,
        restart_requested_at=restart_requested_at,
    )


def info(
    state: str = "running",
    exit_code: int | None = None,
    started_at: str | None = "2024-01-01T00:00:00Z",
    finished_at: str | None = None,
    cell_id: str = CID,
    cid: str = "c1",
) -> ContainerInfo:
    return ContainerInfo(
        id=cid,
        name=f"cp-{cell_id}",
        labels={"cellplane.cell": cell_id, "cellplane.host": "hst-1"},
        state=state,
        running=state in ("running", "paused"),
        exit_code=exit_code,
        started_at=started_at,
        finished_at=finished_at,
    )


def exited(code: int, ran_s: float = 1.0) -> ContainerInfo:
    finished = datetime.fromtimestamp(
        datetime(2024, 1, 1, tzinfo=UTC).timestamp() + ran_s, UTC
    ).isoformat()
    return info("exited", exit_code=code, finished_at=finished)


def run(
    c: CellAssignment | None,
    i: ContainerInfo | None,
    memory: Memory | None = None,
    now: float = NOW,
    **kw: Any,
) -> list[Action]:
    desired = {c.cell_id: c} if c else {}
    observed = {i.labels["cellplane.cell"]: i} if (i and c) else {}
    if memory is None:
        memory = Memory()
        if c and i:  # a container this agent has seen before (adoption: its own tests below)
            memory.seen_container.add(c.cell_id)
    kw.setdefault("full_sync", True)
    return reconcile(desired, observed, kw.pop("orphans", []), memory or Memory(), now, **kw)


def kinds(actions: list[Action]) -> list[tuple[str, str | None]]:
    return [(a.kind, a.container_id) for a in actions]


# --- one pass, fresh memory -----------------------------------------------------------------

TABLE = [
    # (id, desired cell, observed container, expected (kind, container id) list)
    ("create-when-missing", cell(), None, [("CREATE", None)]),
    ("keep-running", cell(), info(), []),
    ("stop-running", cell("STOPPED"), info(), [("STOP", "c1")]),
    ("stopped-already", cell("STOPPED"), info("exited", 143), []),
    ("stopped-never-created", cell("STOPPED"), None, []),
    ("stopped-created-stays", cell("STOPPED"), info("created", started_at=None), []),
    ("remove-running", cell("DELETED"), info(), [("REMOVE", "c1")]),
    ("remove-exited", cell("DELETED"), info("exited", 0), [("REMOVE", "c1")]),
    ("remove-nothing-there", cell("DELETED"), None, [("REMOVE", None)]),
    ("start-created", cell(), info("created", started_at=None), [("START", "c1")]),
    # `docker create`: made, not started, then left alone until its start
    ("made-when-missing", cell("CREATED"), None, [("CREATE", None)]),
    ("made-stays-unstarted", cell("CREATED"), info("created", started_at=None), []),
    ("made-exited-stays", cell("CREATED"), exited(1), []),
    ("never-exit-0", cell(), exited(0), []),
    ("never-exit-1", cell(), exited(1), []),
    ("on-failure-exit-0", cell(policy="on-failure"), exited(0), []),
    (
        "on-failure-retries-used-up",
        cell(policy="on-failure", max_retries=3, restarts=3),
        exited(1),
        [],
    ),
]


@pytest.mark.parametrize(("c", "i", "expected"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_single_pass(
    c: dict[str, Any], i: ContainerInfo | None, expected: list[tuple[str, str | None]]
) -> None:
    assert kinds(run(c, i)) == expected


def test_create_reason_and_remove_reason() -> None:
    (a,) = run(cell(), None)
    assert a == Action("CREATE", CID, None, "created")
    (r,) = run(cell("DELETED"), info())
    assert r.reason == "cell deleted" and r.cell_id == CID


# --- restart policies and backoff -----------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "max_retries", "restarts", "code", "restarts_it"),
    [
        ("always", None, 0, 0, True),
        ("always", None, 0, 1, True),
        ("always", 1, 5, 0, True),  # max_retries only bounds on-failure
        ("on-failure", None, 50, 1, True),
        ("on-failure", 3, 2, 1, True),
        ("on-failure", 3, 3, 1, False),
        ("on-failure", 0, 0, 1, False),
        ("on-failure", 3, 0, 0, False),
        ("never", None, 0, 1, False),
    ],
)
def test_restart_policy(
    policy: str, max_retries: int | None, restarts: int, code: int, restarts_it: bool
) -> None:
    mem = Memory()
    c = cell(policy=policy, max_retries=max_retries, restarts=restarts)
    assert run(c, exited(code), mem) == []  # never immediately: the first backoff applies
    later = run(c, exited(code), mem, now=NOW + BACKOFF_CAP_S)
    if restarts_it:
        (a,) = later
        assert a.kind == "START" and a.container_id == "c1"
        assert a.reason == f"restarted after exit code {code}"
    else:
        assert later == []
        assert CID not in mem.next_restart_at


def test_backoff_waits_then_grows_with_quick_failures() -> None:
    mem = Memory()
    c = cell(policy="always")
    quick = exited(1, ran_s=1.0)
    assert run(c, quick, mem, now=NOW) == []
    assert mem.next_restart_at[CID] == NOW + BACKOFF_START_S
    assert run(c, quick, mem, now=NOW + BACKOFF_START_S - 0.01) == []
    assert kinds(run(c, quick, mem, now=NOW + BACKOFF_START_S)) == [("START", "c1")]
    assert mem.failures[CID] == 1
    assert CID not in mem.next_restart_at
    # It exits quickly again: the wait doubles.
    t = NOW + 10
    assert run(c, quick, mem, now=t) == []
    assert mem.next_restart_at[CID] == t + 2 * BACKOFF_START_S
    assert run(c, quick, mem, now=t + 2 * BACKOFF_START_S - 0.01) == []
    assert kinds(run(c, quick, mem, now=t + 2 * BACKOFF_START_S)) == [("START", "c1")]
    assert mem.failures[CID] == 2
    t = NOW + 20
    run(c, quick, mem, now=t)
    assert mem.next_restart_at[CID] == t + 4 * BACKOFF_START_S


def test_a_stable_run_resets_the_backoff() -> None:
    mem = Memory(failures={CID: 5})
    c = cell(policy="always")
    assert run(c, exited(1, ran_s=STABLE_S + 1), mem, now=NOW) == []
    assert mem.failures[CID] == 0
    assert mem.next_restart_at[CID] == NOW + BACKOFF_START_S


def test_quick_failure_keeps_the_backoff() -> None:
    mem = Memory(failures={CID: 5})
    run(cell(policy="always"), exited(1, ran_s=STABLE_S - 1), mem, now=NOW)
    assert mem.next_restart_at[CID] == NOW + backoff(5)


def test_running_again_forgets_the_pending_restart() -> None:
    mem = Memory()
    c = cell(policy="always")
    run(c, exited(1), mem)
    assert CID in mem.next_restart_at
    assert run(c, info(), mem, now=NOW + 0.1) == []
    assert CID not in mem.next_restart_at


def test_backoff_values() -> None:
    assert [backoff(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(-3) == BACKOFF_START_S
    assert backoff(1000) == BACKOFF_CAP_S


def test_memory_action_failure_bookkeeping() -> None:
    mem = Memory()
    assert mem.action_failed(CID, 100.0) == 100.0 + backoff(0)
    assert mem.action_failed(CID, 200.0) == 200.0 + backoff(1)
    assert mem.action_failures[CID] == 2
    mem.action_succeeded(CID)
    assert CID not in mem.action_failures and CID not in mem.retry_at


# --- adoption: limits set again ---------------------------------------------------------------
# A start runs without its CPU quota, set right after it (an agent may die in between): a running
# container the agent has not seen before gets its limits set again, once, and nothing else.


def test_an_adopted_running_container_gets_its_limits_once() -> None:
    mem = Memory()
    assert kinds(run(cell(), info(), mem)) == [("LIMIT", "c1")]
    assert mem.unlimited == {CID: "c1"}
    mem.unlimited.pop(CID)  # the runner, when the LIMIT action succeeded
    assert run(cell(), info(), mem, now=NOW + 1) == []


def test_limits_are_retried_until_confirmed_and_follow_the_container() -> None:
    mem = Memory()
    run(cell(), info(), mem)
    mem.action_failed(CID, NOW)
    assert run(cell(), info(), mem, now=NOW + 0.1) == []  # backoff
    assert kinds(run(cell(), info(), mem, now=NOW + 60)) == [("LIMIT", "c1")]
    # Another container now (recreated): the pending entry was for the old one.
    assert run(cell(), info(cid="c2"), mem, now=NOW + 61) == []


def test_adopted_stopped_or_exited_containers_need_no_limits() -> None:
    for c, i in ((cell("STOPPED"), info("exited", 143)), (cell(), info("created"))):
        mem = Memory()
        assert "LIMIT" not in [a.kind for a in run(c, i, mem)]
        assert mem.unlimited == {}


# --- restart requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "started", "running", "expected"),
    [
        ("2024-01-01T00:00:10+00:00", "2024-01-01T00:00:05.123456789Z", True, ["RESTART"]),
        ("2024-01-01T00:00:01+00:00", "2024-01-01T00:00:05.123456789Z", True, []),
        ("2024-01-01T00:00:10+00:00", "2024-01-01T00:00:05Z", False, ["RESTART"]),
        # Unknown start time (an engine listing): never restart on a guess; adoption stays put.
        ("2024-01-01T00:00:10+00:00", None, True, []),
        (None, "2024-01-01T00:00:05Z", True, []),
        # Same instant written in two zones: not newer.
        ("2024-01-01T02:00:05+02:00", "2024-01-01T00:00:05Z", True, []),
    ],
)
def test_restart_requested(
    requested: str | None, started: str | None, running: bool, expected: list[str]
) -> None:
    i = info("running" if running else "exited", None if running else 0, started_at=started)
    actions = run(cell(restart_requested_at=requested), i)
    assert [a.kind for a in actions] == expected
    if expected:
        assert actions[0].container_id == "c1"
        assert actions[0].reason == "restart requested"


def test_restart_request_is_not_for_stopped_cells() -> None:
    c = cell("STOPPED", restart_requested_at="2024-01-01T00:00:10+00:00")
    assert run(c, info("exited", 143)) == []


# --- containers that vanish ---------------------------------------------------------------
# A container removed behind Cellplane's back (`podman rm -f`) is a failure judged by the cell's
# restart policy: always -> recreate; on-failure -> recreate while retries are left (counted);
# never, or on-failure out of retries -> END (the runner reports the cell ended).


@pytest.mark.parametrize(
    ("policy", "max_retries", "restarts", "expected"),
    [
        ("always", None, 0, ("CREATE", "recreated")),
        ("always", 1, 7, ("CREATE", "recreated")),  # max_retries only bounds on-failure
        ("on-failure", None, 9, ("CREATE", "recreated")),
        ("on-failure", 2, 1, ("CREATE", "recreated")),
        ("on-failure", 2, 2, ("END", "removed")),
        ("on-failure", 0, 0, ("END", "removed")),
        ("never", None, 0, ("END", "removed")),
    ],
)
def test_a_running_container_that_vanished(
    policy: str, max_retries: int | None, restarts: int, expected: tuple[str, str]
) -> None:
    mem = Memory()
    c = cell(policy=policy, max_retries=max_retries, restarts=restarts)
    assert kinds(run(c, info(), mem)) == [("LIMIT", "c1")]  # adopted
    (a,) = run(c, None, mem, now=NOW + 1)
    assert (a.kind, a.reason, a.container_id) == (*expected, None)


def test_never_policy_ends_a_cell_whose_exited_container_vanished() -> None:
    mem = Memory()
    c = cell(policy="never")
    assert run(c, exited(0), mem) == []
    assert run(c, exited(0), mem, now=NOW + 1) == []
    (a,) = run(c, None, mem, now=NOW + 2)
    assert (a.kind, a.reason) == ("END", "exited")


def test_an_exit_seen_once_before_vanishing_is_a_forced_removal() -> None:
    # `remove(force=True)` kills first: a listing caught in between shows exit 137 once.
    mem = Memory()
    c = cell(policy="never")
    run(c, info(), mem)
    assert run(c, exited(137), mem, now=NOW + 1) == []
    (a,) = run(c, None, mem, now=NOW + 2)
    assert (a.kind, a.reason) == ("END", "removed")


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        ("always", 0, ("CREATE", "recreated")),
        ("always", 1, ("CREATE", "recreated")),
        ("on-failure", 1, ("CREATE", "recreated")),  # it was waiting for its restart
        ("on-failure", 0, ("END", "exited")),  # it had succeeded: nothing to retry
        ("never", 1, ("END", "exited")),
    ],
)
def test_an_exited_container_that_vanished(
    policy: str, code: int, expected: tuple[str, str]
) -> None:
    mem = Memory()
    c = cell(policy=policy)
    run(c, exited(code), mem)
    run(c, exited(code), mem, now=NOW + 0.1)
    (a,) = run(c, None, mem, now=NOW + 1)
    assert (a.kind, a.reason) == expected


def test_an_ended_cell_stays_ended_until_started_again() -> None:
    mem = Memory(seen_container={CID}, ended={CID: None})
    assert run(cell(), None, mem) == []
    assert run(cell(), None, mem, now=NOW + 60) == []
    # `cell start` stamps a restart request: a new run, created afresh (not a recreation).
    again = cell(restart_requested_at="2024-01-01T00:00:10+00:00")
    (a,) = run(again, None, mem, now=NOW + 61)
    assert (a.kind, a.reason) == ("CREATE", "created")
    assert CID not in mem.ended and CID not in mem.seen_container


def test_a_restarted_agent_learns_the_end_from_the_server() -> None:
    """Memory is lost with the agent; the assignment's `ended_at` keeps the cell ended."""
    ended = dataclasses.replace(cell(), ended_at="2024-01-01T00:01:00+00:00")
    assert run(ended, None, Memory()) == []
    older_request = dataclasses.replace(ended, restart_requested_at="2024-01-01T00:00:30+00:00")
    assert run(older_request, None, Memory()) == []
    newer_request = dataclasses.replace(ended, restart_requested_at="2024-01-01T00:02:00+00:00")
    (a,) = run(newer_request, None, Memory())
    assert (a.kind, a.reason) == ("CREATE", "created")


def test_is_ended() -> None:
    mem = Memory()
    assert not is_ended(cell(), mem)
    mem.ended[CID] = "2024-01-01T00:00:10+00:00"
    assert is_ended(cell(restart_requested_at="2024-01-01T00:00:10+00:00"), mem)
    assert not is_ended(cell(restart_requested_at="2024-01-01T00:00:11+00:00"), mem)


def test_a_new_agent_creates_rather_than_recreates() -> None:
    # Memory is lost on agent restart: a missing container is simply created.
    (a,) = run(cell(policy="never"), None, Memory())
    assert a.reason == "created"


# --- orphans, busy cells, retry_at ----------------------------------------------------------


def orphan(cell_id: str = "cel-gone", cid: str = "o1") -> ContainerInfo:
    return info(cell_id=cell_id, cid=cid)


def test_orphans_removed_only_after_a_full_sync() -> None:
    o = orphan()
    assert run(None, None, orphans=[o], full_sync=False) == []
    (a,) = run(None, None, orphans=[o], full_sync=True)
    assert a == Action("REMOVE_ORPHAN", "cel-gone", "o1", "no cell claims it")


def test_orphans_of_busy_or_claimed_cells_stay() -> None:
    o = orphan()
    assert run(None, None, orphans=[o], busy=frozenset({"cel-gone"})) == []
    claimed = orphan(CID, "o2")
    actions = run(cell(), info(), orphans=[claimed])
    assert [a.kind for a in actions] == []


def test_orphans_and_desired_cells_together() -> None:
    actions = run(cell(), None, orphans=[orphan()])
    assert sorted(a.kind for a in actions) == ["CREATE", "REMOVE_ORPHAN"]


def test_busy_cells_are_skipped() -> None:
    for c, i in [(cell(), None), (cell("STOPPED"), info()), (cell("DELETED"), info())]:
        assert run(c, i, busy=frozenset({CID})) == []


def test_retry_at_defers_until_due() -> None:
    mem = Memory(retry_at={CID: NOW + 5})
    assert run(cell(), None, mem, now=NOW) == []
    assert run(cell(), None, mem, now=NOW + 4.9) == []
    assert kinds(run(cell(), None, mem, now=NOW + 5)) == [("CREATE", None)]


def test_memory_records_what_was_seen() -> None:
    mem = Memory()
    run(cell(), info(), mem)
    assert CID in mem.seen_container and mem.last_running[CID] is True
    run(cell(), exited(0), mem)
    assert mem.last_running[CID] is False


def test_several_cells_are_independent() -> None:
    desired = {
        "a": cell(cell_id="a"),
        "b": cell("STOPPED", cell_id="b"),
        "c": cell("DELETED", cell_id="c"),
    }
    observed = {"b": info(cell_id="b", cid="cb")}
    actions = reconcile(desired, observed, [], Memory(), NOW, full_sync=True)
    assert sorted((a.kind, a.cell_id) for a in actions) == [
        ("CREATE", "a"),
        ("REMOVE", "c"),
        ("STOP", "b"),
    ]


# --- observed_state and parse_time ----------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "i", "state"),
    [
        ("RUNNING", None, "CREATING"),
        ("STOPPED", None, "STOPPED"),
        ("DELETED", None, "DELETING"),
        ("RUNNING", info(), "RUNNING"),
        ("STOPPED", info(), "STOPPING"),
        ("DELETED", info(), "DELETING"),
        ("RUNNING", info("created", started_at=None), "STARTING"),
        ("CREATED", None, "CREATING"),
        ("CREATED", info("created", started_at=None), "CREATED"),
        ("CREATED", info(), "RUNNING"),
        ("CREATED", exited(0), "EXITED"),
        ("STOPPED", info("created", started_at=None), "STOPPED"),
        ("RUNNING", exited(1), "EXITED"),
        ("STOPPED", exited(143), "STOPPED"),
        ("DELETED", exited(0), "DELETING"),
        # `docker pause`: frozen, not ended (its engine counts it running)
        ("RUNNING", info("paused"), "PAUSED"),
        ("CREATED", info("paused"), "PAUSED"),
        ("STOPPED", info("paused"), "STOPPING"),
        ("DELETED", info("paused"), "DELETING"),
    ],
)
def test_observed_state(desired: str, i: ContainerInfo | None, state: str) -> None:
    assert observed_state(cell(desired), i) == state


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, UTC)),
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
        ("2024-05-01T14:00:00.5+02:00", datetime(2024, 5, 1, 12, 0, 0, 500000, UTC)),
        ("2024-05-01T12:00:00.123456789123+00:00", datetime(2024, 5, 1, 12, 0, 0, 123456, UTC)),
    ],
)
@pytest.mark.parametrize("tz", ["UTC0", "JST-9"])
def test_parse_time(
    text: str, expected: datetime, tz: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Absolute instants, whatever the agent's own zone (`JST-9` is UTC+9 as a POSIX TZ)."""
    with monkeypatch.context() as m:
        m.setenv("TZ", tz)
        time.tzset()
        try:
            got = parse_time(text)
        finally:
            m.undo()
            time.tzset()
    assert got == pytest.approx(expected.timestamp(), abs=1e-6)


@pytest.mark.parametrize("text", [None, "", "0001-01-01T00:00:00Z", "not a time", "tick-000001"])
def test_parse_time_unknown(text: str | None) -> None:
    assert parse_time(text) is None
