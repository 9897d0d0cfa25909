"""plan_service, exhaustively over small services: every count, bound and readiness order.

A tiny simulator stands in for the world: created cells start PENDING and become RUNNING when
the test says so (every order is tried), deleted cells stop counting at once. Invariants checked
after every pass: during a rollout the running count never drops below instances -
max_unavailable (once it had reached it) and the live count never exceeds instances + max_surge;
every rollout and every scale ends converged with exactly `instances` running cells of the
current revision.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from cellplane.scheduler.service_plan import (
    BACKOFF_CAP_S,
    Create,
    Delete,
    ObservedCell,
    ServiceDesired,
    backoff,
    plan_service,
)

NOW = datetime(2026, 12, 4, tzinfo=UTC)


class World:
    def __init__(self) -> None:
        self.cells: dict[str, ObservedCell] = {}
        self.next_id = 0

    def apply(self, desired: ServiceDesired) -> tuple[ServiceDesired, int]:
        plan = plan_service(desired, list(self.cells.values()), NOW)
        nxt = desired.next_ordinal
        for a in plan.actions:
            if isinstance(a, Delete):
                assert a.cell_id in self.cells
                del self.cells[a.cell_id]
            else:
                assert a.ordinal >= nxt  # ordinals are never reused
                self.next_id += 1
                cid = f"c{self.next_id}"
                self.cells[cid] = ObservedCell(cid, a.ordinal, a.revision, "PENDING", "RUNNING")
                nxt = a.ordinal + 1
        return replace(desired, next_ordinal=nxt), len(plan.actions)

    def running(self) -> int:
        return sum(1 for c in self.cells.values() if c.state == "RUNNING")

    def start(self, count: int) -> None:
        pending = sorted(
            (c for c in self.cells.values() if c.state != "RUNNING"), key=lambda c: c.id
        )
        for c in pending[:count]:
            self.cells[c.id] = replace(c, state="RUNNING")


def converge(world: World, desired: ServiceDesired, step: int) -> ServiceDesired:
    """Run passes, starting `step` pending cells between them, until the plan is converged."""
    for _ in range(200):
        desired, _ = world.apply(desired)
        if plan_service(desired, list(world.cells.values()), NOW).converged:
            return desired
        world.start(step)
    raise AssertionError("did not converge")


BOUNDS = [(u, s) for u, s in itertools.product(range(3), range(3)) if u or s]


@pytest.mark.parametrize("instances", range(6))
@pytest.mark.parametrize(("unavailable", "surge"), BOUNDS)
@pytest.mark.parametrize("step", [1, 2, 100])
def test_rollouts_stay_within_their_bounds_and_replace_every_cell(
    instances: int, unavailable: int, surge: int, step: int
) -> None:
    world = World()
    desired = ServiceDesired(instances, 1, unavailable, surge, next_ordinal=1)
    desired = converge(world, desired, 100)
    assert world.running() == instances
    floor = max(0, instances - unavailable)
    desired = replace(desired, revision=2)
    for _ in range(200):
        desired, _ = world.apply(desired)
        assert world.running() >= floor, (world.cells, desired)
        assert len(world.cells) <= instances + surge
        if plan_service(desired, list(world.cells.values()), NOW).converged:
            break
        world.start(step)
    else:
        raise AssertionError("rollout did not finish")
    assert len(world.cells) == instances
    assert {c.revision for c in world.cells.values()} <= {2}
    assert world.running() == instances


@pytest.mark.parametrize(("start", "end"), list(itertools.product(range(6), range(6))))
def test_scaling_reaches_the_count_with_fresh_ordinals(start: int, end: int) -> None:
    world = World()
    desired = converge(world, ServiceDesired(start, 1, 1, 1, next_ordinal=1), 100)
    before = {c.ordinal for c in world.cells.values()}
    desired = converge(world, replace(desired, instances=end), 1)
    ordinals = {c.ordinal for c in world.cells.values()}
    assert len(ordinals) == end == world.running()
    if end <= start:  # the lowest numbers stay
        assert ordinals == set(sorted(before)[:end])
    else:
        assert before <= ordinals and min(ordinals - before, default=start + 1) == start + 1


def test_scale_down_removes_cells_that_do_not_run_first() -> None:
    cells = [
        ObservedCell("a", 1, 1, "RUNNING", "RUNNING"),
        ObservedCell("b", 2, 1, "PENDING", "RUNNING"),
        ObservedCell("c", 3, 1, "RUNNING", "RUNNING"),
    ]
    plan = plan_service(ServiceDesired(1, 1, 1, 1, 4), cells, NOW)
    assert plan.actions == (Delete("b", "scale-down"), Delete("c", "scale-down"))


@pytest.mark.parametrize("state", ["FAILED", "EXITED", "RUNNING"])
@pytest.mark.parametrize("ended", [False, True])
def test_a_broken_cell_is_removed_and_replaced_anything_else_is_kept(
    state: str, ended: bool
) -> None:
    cells = [
        ObservedCell("a", 1, 1, "RUNNING", "RUNNING"),
        ObservedCell("b", 2, 1, state, "RUNNING", ended=ended),
    ]
    plan = plan_service(ServiceDesired(2, 1, 1, 1, 3), cells, NOW)
    if state == "FAILED" or ended:
        assert plan.actions == (Delete("b", "failed"), Create(3, 1))
    else:
        assert Delete("b", "failed") not in plan.actions


def test_lost_cells_are_recreated_and_cells_being_deleted_do_not_count() -> None:
    cells = [
        ObservedCell("a", 1, 1, "RUNNING", "RUNNING"),
        ObservedCell("gone", 2, 1, "DELETING", "DELETED"),
    ]
    plan = plan_service(ServiceDesired(3, 1, 1, 1, 3), cells, NOW)
    assert plan.actions == (Create(3, 1), Create(4, 1))
    assert plan.live == 3 and not plan.converged


def test_a_deleted_service_removes_every_live_cell_and_converges_when_none_remain() -> None:
    cells = [
        ObservedCell("a", 1, 1, "RUNNING", "RUNNING"),
        ObservedCell("b", 2, 2, "PENDING", "RUNNING"),
        ObservedCell("c", 3, 1, "DELETING", "DELETED"),
    ]
    desired = ServiceDesired(2, 2, 1, 1, 4, deleting=True)
    plan = plan_service(desired, cells, NOW)
    assert plan.actions == (Delete("a", "service-deleted"), Delete("b", "service-deleted"))
    assert not plan.converged
    assert plan_service(desired, [], NOW).converged


def test_replacements_back_off_while_cells_keep_failing() -> None:
    assert [backoff(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 32, 60]
    assert backoff(100) == BACKOFF_CAP_S
    cells = [ObservedCell("a", 1, 1, "RUNNING", "RUNNING")]
    failing = ServiceDesired(2, 1, 1, 1, 5, failures=3, failed_at=NOW)
    held = plan_service(failing, cells, NOW + timedelta(seconds=3))
    assert held.actions == () and held.held_until == NOW + timedelta(seconds=4)
    assert plan_service(failing, cells, NOW + timedelta(seconds=4)).actions == (Create(5, 1),)
    # The first failure is replaced at once.
    fresh = ServiceDesired(2, 1, 1, 1, 5)
    assert plan_service(fresh, cells, NOW).actions == (Create(5, 1),)


@pytest.mark.parametrize(("before", "after"), list(itertools.product(range(5), range(5))))
@pytest.mark.parametrize("at_pass", [0, 1, 3])
@pytest.mark.parametrize("fail", [False, True])
def test_a_scale_or_a_failure_during_a_rollout_still_ends_converged(
    before: int, after: int, at_pass: int, fail: bool
) -> None:
    world = World()
    desired = converge(world, ServiceDesired(before, 1, 1, 1, next_ordinal=1), 100)
    desired = replace(desired, revision=2)
    for _ in range(at_pass):
        desired, _ = world.apply(desired)
        world.start(1)
    desired = replace(desired, instances=after)
    if fail and world.cells:
        victim = min(world.cells.values(), key=lambda c: c.id)
        world.cells[victim.id] = replace(victim, state="FAILED")
    desired = converge(world, desired, 1)
    assert len(world.cells) == after == world.running()
    assert {c.revision for c in world.cells.values()} <= {2}
