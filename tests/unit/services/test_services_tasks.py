"""The pure step arithmetic of tasks: `advance` and `fail` on a Task that never sees a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cellplane.services import tasks
from cellplane.state.models import Task

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def make(steps: tuple[str, ...] = tasks.CREATE_STEPS, kind: str = "CREATE_CELL") -> Task:
    return Task(
        id="tsk-1",
        kind=kind,
        state="QUEUED",
        entity_kind="cell",
        entity_id="cel-1",
        tenant_id="tnt-1",
        steps=[
            {"name": s, "state": "QUEUED", "started_at": None, "finished_at": None, "error": None}
            for s in steps
        ],
        progress=0,
        created_at=T0,
    )


def states(task: Task) -> list[str]:
    return [s["state"] for s in task.steps]


def test_step_names_of_each_kind() -> None:
    assert tasks.CREATE_STEPS == ("SCHEDULE", "PREPARE_IMAGE", "CREATE", "START", "RUNNING")
    assert tasks.START_STEPS == ("SCHEDULE", "START", "RUNNING")
    assert tasks.STOP_STEPS == ("STOP",)
    assert tasks.DELETE_STEPS == ("STOP", "DELETE")


def test_starting_the_first_step_starts_the_task() -> None:
    t = make()
    assert tasks.advance(t, "SCHEDULE", "STARTED", T0)
    assert t.state == "STARTED"
    assert states(t) == ["STARTED", "QUEUED", "QUEUED", "QUEUED", "QUEUED"]
    assert t.progress == 0
    assert t.started_at == T0
    assert t.steps[0]["started_at"] == T0.isoformat()
    assert t.steps[0]["finished_at"] is None


def test_later_step_completes_every_earlier_step() -> None:
    t = make()
    at = T0 + timedelta(seconds=3)
    assert tasks.advance(t, "CREATE", "COMPLETED", at)
    assert states(t) == ["COMPLETED", "COMPLETED", "COMPLETED", "QUEUED", "QUEUED"]
    assert t.progress == 60
    for s in t.steps[:3]:
        assert s["started_at"] == at.isoformat()
        assert s["finished_at"] == at.isoformat()
    assert t.steps[3]["started_at"] is None
    assert t.state == "STARTED"
    assert t.finished_at is None


def test_started_step_completes_earlier_ones_only() -> None:
    t = make()
    tasks.advance(t, "START", "STARTED", T0)
    assert states(t) == ["COMPLETED", "COMPLETED", "COMPLETED", "STARTED", "QUEUED"]
    assert t.progress == 60


def test_progress_runs_in_step_order_to_completion() -> None:
    t = make()
    seen = []
    for i, step in enumerate(tasks.CREATE_STEPS):
        assert tasks.advance(t, step, "COMPLETED", T0 + timedelta(seconds=i))
        seen.append(t.progress)
    assert seen == [20, 40, 60, 80, 100]
    assert t.state == "COMPLETED"
    assert t.finished_at == T0 + timedelta(seconds=4)
    assert t.started_at == T0


def test_completed_step_keeps_its_first_timestamps() -> None:
    t = make()
    tasks.advance(t, "SCHEDULE", "STARTED", T0)
    later = T0 + timedelta(seconds=5)
    tasks.advance(t, "SCHEDULE", "COMPLETED", later)
    assert t.steps[0]["started_at"] == T0.isoformat()
    assert t.steps[0]["finished_at"] == later.isoformat()
    # Completing it again changes nothing.
    assert not tasks.advance(t, "SCHEDULE", "COMPLETED", later + timedelta(seconds=1))
    assert t.steps[0]["finished_at"] == later.isoformat()


def test_going_back_to_an_earlier_step_does_not_undo_later_ones() -> None:
    t = make()
    tasks.advance(t, "CREATE", "COMPLETED", T0)
    assert not tasks.advance(t, "SCHEDULE", "STARTED", T0)
    assert states(t)[:3] == ["COMPLETED"] * 3


def test_unknown_step_is_ignored() -> None:
    t = make(tasks.STOP_STEPS, "STOP_CELL")
    assert not tasks.advance(t, "RUNNING", "COMPLETED", T0)
    assert t.state == "QUEUED"
    assert states(t) == ["QUEUED"]
    assert t.started_at is None


def test_message_is_recorded_and_updated() -> None:
    t = make()
    assert tasks.advance(t, "SCHEDULE", "STARTED", T0, message="no host is READY")
    assert t.steps[0]["message"] == "no host is READY"
    # Same state, new message: still a change.
    assert tasks.advance(t, "SCHEDULE", "STARTED", T0, message="needs 8192 MB memory")
    assert t.steps[0]["message"] == "needs 8192 MB memory"
    # Same state, same message: nothing changed.
    assert not tasks.advance(t, "SCHEDULE", "STARTED", T0, message="needs 8192 MB memory")


def test_terminal_tasks_are_frozen() -> None:
    t = make(tasks.STOP_STEPS, "STOP_CELL")
    assert tasks.advance(t, "STOP", "COMPLETED", T0)
    assert t.state == "COMPLETED"
    assert not tasks.advance(t, "STOP", "STARTED", T0 + timedelta(seconds=1))
    assert not tasks.fail(t, "late", T0 + timedelta(seconds=1))
    assert t.state == "COMPLETED" and t.error is None

    f = make()
    assert tasks.fail(f, "boom", T0)
    assert not tasks.advance(f, "RUNNING", "COMPLETED", T0 + timedelta(seconds=1))
    assert not tasks.fail(f, "again", T0 + timedelta(seconds=1))
    assert f.state == "ERROR" and f.error == "boom"


def test_fail_marks_the_running_step() -> None:
    t = make()
    tasks.advance(t, "PREPARE_IMAGE", "STARTED", T0)
    at = T0 + timedelta(seconds=2)
    assert tasks.fail(t, "image pull failed", at)
    assert t.state == "ERROR"
    assert t.error == "image pull failed"
    assert t.finished_at == at
    assert states(t) == ["COMPLETED", "ERROR", "QUEUED", "QUEUED", "QUEUED"]
    step = t.steps[1]
    assert step["error"] == "image pull failed"
    assert step["started_at"] == T0.isoformat()
    assert step["finished_at"] == at.isoformat()


def test_fail_of_a_queued_task_marks_its_first_step() -> None:
    t = make()
    assert tasks.fail(t, "superseded", T0)
    assert states(t)[0] == "ERROR"
    assert t.steps[0]["started_at"] == T0.isoformat()
    assert t.started_at == T0


def test_fail_names_a_step() -> None:
    t = make()
    tasks.advance(t, "SCHEDULE", "STARTED", T0)
    tasks.fail(t, "start failed", T0, step="START")
    assert states(t) == ["STARTED", "QUEUED", "QUEUED", "ERROR", "QUEUED"]
    assert t.steps[3]["error"] == "start failed"


def test_task_view_shape() -> None:
    t = make()
    tasks.advance(t, "SCHEDULE", "COMPLETED", T0)
    v = tasks.task_view(t)
    assert v["id"] == "tsk-1"
    assert v["entity"] == {"kind": "cell", "id": "cel-1"}
    assert v["progress"] == 20
    assert [s["name"] for s in v["steps"]] == list(tasks.CREATE_STEPS)
    assert v["started_at"] == T0.isoformat()
    assert v["finished_at"] is None
