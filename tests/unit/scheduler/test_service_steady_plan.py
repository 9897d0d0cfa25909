"""`steady_plan`: the plan of a steady service told from counts equals `plan_service`'s, and it
declines (None) whenever the cells themselves are needed. Pure: random cells, fixed time."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cellplane.scheduler.service_plan import (
    ObservedCell,
    ServiceDesired,
    count_cells,
    plan_service,
    steady_plan,
)

NOW = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
STATES = ("PENDING", "SCHEDULED", "RUNNING", "RUNNING", "RUNNING", "FAILED", "EXITED", "STOPPED")


def _cells(rng: random.Random, n: int, revision: int, messy: float) -> list[ObservedCell]:
    out = []
    for i in range(n):
        odd = rng.random() < messy
        out.append(
            ObservedCell(
                id=f"cel-{i}",
                ordinal=i + 1,
                revision=revision - 1 if odd and rng.random() < 0.3 else revision,
                state=rng.choice(STATES) if odd else rng.choice(("SCHEDULED", "RUNNING")),
                desired_state="DELETED" if odd and rng.random() < 0.2 else "RUNNING",
                ended=odd and rng.random() < 0.2,
            )
        )
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_plan_from_counts_is_the_plan_from_cells(seed: int) -> None:
    rng = random.Random(seed)
    told = 0
    for _ in range(200):
        n = rng.randint(0, 6)
        revision = rng.randint(1, 3)
        desired = ServiceDesired(
            instances=n,
            revision=revision,
            max_unavailable=rng.randint(0, 2),
            max_surge=rng.randint(0, 2),
            next_ordinal=n + 1,
            failures=rng.choice((0, 0, 0, 1)),
            failed_at=NOW if rng.random() < 0.5 else None,
        )
        cells = _cells(rng, n + rng.choice((0, 0, 0, -1, 1)), revision, rng.choice((0, 0.3)))
        quick = steady_plan(desired, count_cells(cells, revision))
        if quick is None:
            continue
        told += 1
        assert quick == plan_service(desired, cells, NOW)
        assert quick.actions == ()
    assert told > 20  # the steady case is common: the comparison is not vacuous


def test_it_declines_what_needs_the_cells() -> None:
    base = ServiceDesired(instances=2, revision=1, max_unavailable=1, max_surge=1, next_ordinal=3)
    run = [ObservedCell(f"c{i}", i, 1, "RUNNING", "RUNNING") for i in (1, 2)]
    assert steady_plan(base, count_cells(run, 1)) is not None
    failed = [run[0], ObservedCell("c2", 2, 1, "FAILED", "RUNNING")]
    old = [run[0], ObservedCell("c2", 2, 0, "RUNNING", "RUNNING")]
    for desired, cells in (
        (base, failed),  # a cell to replace
        (base, old),  # a rollout
        (base, run[:1]),  # one missing
        (base, [*run, ObservedCell("c3", 3, 1, "RUNNING", "RUNNING")]),  # one too many
        (ServiceDesired(2, 1, 1, 1, 3, deleting=True), run),
        (ServiceDesired(2, 1, 1, 1, 3, failures=1, failed_at=NOW), run),
    ):
        assert steady_plan(desired, count_cells(cells, desired.revision)) is None
