"""A POST's transaction (`services.idempotency.run`) that PostgreSQL rolled back for a conflict
runs again before the client is answered, and its key stores one answer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cellplane_platform_support import Platform
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, IdempotencyMismatch
from cellplane.ids import utcnow
from cellplane.services import idempotency
from cellplane.services.context import Principal
from cellplane.services.idempotency import Outcome
from cellplane.state.models import IdempotencyRecord, Project

psycopg_errors = pytest.importorskip("psycopg.errors")


def _principal() -> Principal:
    return Principal(subject="usr-t", tenant_id=None, tenant="default", roles=("admin",))


def _records(plat: Platform) -> int:
    with plat.svc.db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0)


def test_a_deadlocked_transaction_runs_again_and_stores_one_answer(plat: Platform) -> None:
    calls: list[str] = []

    def change(s: Session) -> Outcome:
        calls.append(s.scalars(select(Project.name)).first() or "")
        if len(calls) == 1:
            raise OperationalError("UPDATE hosts", {}, psycopg_errors.DeadlockDetected("deadlock"))
        return Outcome(202, {"n": len(calls)})

    before = _records(plat)
    out = idempotency.run(plat.svc, _principal(), "k-1", "fp", "POST", "/v1/x", change)
    assert out.status == 202 and out.body == {"n": 2}
    assert len(calls) == 2
    assert _records(plat) == before + 1
    # The replay answers from the record; the change does not run a third time.
    again = idempotency.run(plat.svc, _principal(), "k-1", "fp", "POST", "/v1/x", change)
    assert again.body == {"n": 2} and len(calls) == 2


def test_any_other_database_error_is_not_run_again(plat: Platform) -> None:
    calls: list[int] = []

    def change(s: Session) -> Outcome:
        calls.append(1)
        raise OperationalError("UPDATE hosts", {}, psycopg_errors.AdminShutdown("terminating"))

    before = _records(plat)
    with pytest.raises(OperationalError, match="terminating"):
        idempotency.run(plat.svc, _principal(), "k-2", "fp", "POST", "/v1/x", change)
    assert calls == [1] and _records(plat) == before


def test_a_change_refused_because_its_twin_committed_first_gets_the_twins_answer(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client's retry racing its original (PostgreSQL): the original commits between the
    retry's look for the key and its own change, which then finds the name taken. The retry is
    answered with the original's answer, not 409; a request with another key still gets the
    409. SQLite serialises writers, so the original's commit is played right after the
    refused transaction ends."""
    twin_key = ""

    def refused_then_twin_commits(run: Callable[[], Outcome]) -> Outcome:
        try:
            return run()
        finally:
            with plat.svc.db.session() as s:
                s.add(
                    IdempotencyRecord(
                        principal=_principal().key,
                        key=twin_key,
                        method="POST",
                        path="/v1/x",
                        body_hash="fp",
                        status=202,
                        response={"first": True},
                        location="/v1/tasks/t-1",
                        created_at=utcnow(),
                    )
                )

    def refused(s: Session) -> Outcome:
        raise Conflict("a cell named 'web' already exists in project 'default'")

    monkeypatch.setattr(idempotency, "retry_conflicts", refused_then_twin_commits)
    twin_key = "k-3"
    out = idempotency.run(plat.svc, _principal(), "k-3", "fp", "POST", "/v1/x", refused)
    assert (out.status, out.body, out.location) == (202, {"first": True}, "/v1/tasks/t-1")
    twin_key = "k-5"
    with pytest.raises(Conflict, match="already exists"):
        idempotency.run(plat.svc, _principal(), "k-4", "fp", "POST", "/v1/x", refused)
    twin_key = "k-6"
    with pytest.raises(IdempotencyMismatch):
        idempotency.run(plat.svc, _principal(), "k-6", "other", "POST", "/v1/x", refused)
