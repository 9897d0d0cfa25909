"""Running a transaction again after PostgreSQL rolled it back for a conflict (pure)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from cellplane.state.conflicts import conflicted, retry_conflicts

psycopg_errors = pytest.importorskip("psycopg.errors")


def _wrapped(orig: BaseException) -> OperationalError:
    return OperationalError("UPDATE hosts ...", {}, orig)


def test_conflicts_are_deadlocks_serialization_failures_and_unavailable_locks() -> None:
    assert conflicted(_wrapped(psycopg_errors.DeadlockDetected("deadlock detected")))
    assert conflicted(_wrapped(psycopg_errors.SerializationFailure("could not serialize")))
    assert conflicted(_wrapped(psycopg_errors.LockNotAvailable("could not obtain lock")))
    assert not conflicted(_wrapped(psycopg_errors.AdminShutdown("terminating connection")))
    assert not conflicted(IntegrityError("INSERT", {}, psycopg_errors.UniqueViolation("dup")))
    assert not conflicted(ValueError("deadlock detected"))


def test_a_conflicted_transaction_runs_again_until_it_passes() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def run() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _wrapped(psycopg_errors.DeadlockDetected("deadlock detected"))
        return "written"

    assert retry_conflicts(run, sleep=waits.append) == "written"
    assert len(calls) == 3 and len(waits) == 2
    assert 0.005 <= waits[0] <= 0.015 and 0.01 <= waits[1] <= 0.03  # growing, jittered


def test_the_last_conflict_and_any_other_error_are_raised_at_once() -> None:
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise _wrapped(psycopg_errors.DeadlockDetected("deadlock detected"))

    with pytest.raises(OperationalError, match="deadlock"):
        retry_conflicts(always, attempts=3, sleep=lambda _: None)
    assert len(calls) == 3

    calls.clear()

    def broken() -> None:
        calls.append(1)
        raise _wrapped(psycopg_errors.AdminShutdown("terminating connection"))

    with pytest.raises(OperationalError, match="terminating"):
        retry_conflicts(broken, sleep=lambda _: None)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="attempts"):
        retry_conflicts(lambda: None, attempts=0)
