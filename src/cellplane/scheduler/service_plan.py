"""A service's reconcile, pure: (desired, observed cells, now) -> actions.

No I/O, no clock, no ids: the caller (`services.cell_services`) reads the service row and its
cells, calls :func:`plan_service` and carries out the actions in one transaction. The rules:

- a service being deleted removes every cell it still has;
- a cell that ended (FAILED, or its container vanished and its restart policy keeps it down) is
  removed and, as it no longer counts, replaced: the desired count is kept;
- without a rollout in progress (every live cell runs the current template revision), missing
  cells are created and extra ones removed (those not running first, then the highest ordinals);
- during a rollout (cells of an older revision remain), cells of the new revision are created
  while the live total stays within ``instances + max_surge``, and old cells are removed only
  while the running count stays at least ``instances - max_unavailable`` (old cells that are not
  running go first: removing them costs nothing). A removed cell stops counting at once, so the
  bounds hold for what the next pass observes as well.

A failed cell is replaced at once, unless the service's cells keep failing: after
``failures`` replacements in a row the next waits ``backoff(failures)`` from the last failure,
as the agent's restart backoff does for one container.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "BACKOFF_CAP_S",
    "CellCounts",
    "Create",
    "Delete",
    "ObservedCell",
    "ServiceDesired",
    "ServicePlan",
    "backoff",
    "count_cells",
    "is_broken",
    "plan_service",
    "steady_plan",
]

BACKOFF_CAP_S = 60.0
# Cell states that end a cell for good unless someone starts it (`services.capacity`).
_ENDED = ("FAILED",)


@dataclass(frozen=True)
class ServiceDesired:
    instances: int
    revision: int
    max_unavailable: int
    max_surge: int
    next_ordinal: int
    deleting: bool = False
    # Consecutive failures replaced (reset when the service is whole again) and the last one's time.
    failures: int = 0
    failed_at: datetime | None = None


@dataclass(frozen=True)
class ObservedCell:
    id: str
    ordinal: int
    revision: int
    state: str
    desired_state: str
    ended: bool = False


@dataclass(frozen=True)
class Create:
    ordinal: int
    revision: int


@dataclass(frozen=True)
class Delete:
    cell_id: str
    reason: str  # "failed", "scale-down", "rollout", "service-deleted"


@dataclass(frozen=True)
class ServicePlan:
    actions: tuple[Create | Delete, ...]
    ready: int  # running cells of the current revision, after the plan
    current: int  # live cells of the current revision, after the plan
    live: int  # live cells of any revision, after the plan
    converged: bool  # instances cells, all current, all running, nothing to do
    held_until: datetime | None = None  # replacements wait for the failure backoff


def backoff(failures: int) -> float:
    """Seconds to wait before the next replacement after `failures` in a row (1, 2, 4 ... 60)."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_CAP_S, 2.0 ** (failures - 1))


def is_broken(c: ObservedCell) -> bool:
    """The cell will not run again by itself: it failed, or ended and stays down."""
    return c.desired_state != "DELETED" and (c.state in _ENDED or c.ended)


def _ready(c: ObservedCell) -> bool:
    return c.state == "RUNNING" and not c.ended


def _excess_order(c: ObservedCell) -> tuple[int, int]:
    """Which cells go first when there are too many: not running, then the highest ordinal."""
    return (0 if not _ready(c) else 1, -c.ordinal)


def plan_service(
    desired: ServiceDesired, observed: list[ObservedCell], now: datetime
) -> ServicePlan:
    live = [c for c in observed if c.desired_state != "DELETED"]
    if desired.deleting:
        return ServicePlan(
            tuple(Delete(c.id, "service-deleted") for c in live),
            ready=0,
            current=0,
            live=0,
            converged=not observed,
        )
    actions: list[Create | Delete] = []
    broken = [c for c in live if is_broken(c)]
    actions += [Delete(c.id, "failed") for c in broken]
    healthy = [c for c in live if not is_broken(c)]
    new = [c for c in healthy if c.revision == desired.revision]
    old = [c for c in healthy if c.revision != desired.revision]
    n = desired.instances

    if not old:
        extra = sorted(new, key=_excess_order)[: max(0, len(new) - n)]
        actions += [Delete(c.id, "scale-down") for c in extra]
        new = [c for c in new if c not in extra]
        want = max(0, n - len(new))
    else:
        min_ready = max(0, n - desired.max_unavailable)
        # Old cells that are not running cost nothing to remove.
        idle_old = [c for c in old if not _ready(c)]
        actions += [Delete(c.id, "rollout") for c in idle_old]
        old = [c for c in old if _ready(c)]
        # Too many new cells (scaled down during the rollout): the idle ones go first.
        extra = sorted(new, key=_excess_order)[: max(0, len(new) - n)]
        actions += [Delete(c.id, "scale-down") for c in extra]
        new = [c for c in new if c not in extra]
        ready_now = sum(1 for c in new if _ready(c)) + len(old)
        budget = max(0, ready_now - min_ready)
        # Old cells beyond what the new revision still needs are removed first.
        goners = sorted(old, key=lambda c: c.ordinal)[:budget]
        actions += [Delete(c.id, "rollout") for c in goners]
        old = [c for c in old if c not in goners]
        room = n + desired.max_surge - (len(new) + len(old))
        want = max(0, min(n - len(new), room))

    held_until = None
    if want and (broken or desired.failures) and desired.failed_at is not None:
        wait = backoff(desired.failures)
        until = desired.failed_at + timedelta(seconds=wait)
        if now < until:
            held_until, want = until, 0
    ordinals = range(desired.next_ordinal, desired.next_ordinal + want)
    actions += [Create(o, desired.revision) for o in ordinals]
    ready = sum(1 for c in new if _ready(c))
    live_after = len(new) + len(old) + want
    return ServicePlan(
        tuple(actions),
        ready=ready,
        current=len(new) + want,
        live=live_after,
        converged=not actions and not old and len(new) == n and ready == n,
        held_until=held_until,
    )


# --- a steady service, from counts ---------------------------------------------------------------


@dataclass(frozen=True)
class CellCounts:
    """What the plan of a service in a steady state needs of its cells: counts, which the
    caller can take in one SQL aggregate instead of reading every cell (`count_cells` is the
    reference, from the cells themselves)."""

    live: int  # desired state not DELETED
    broken: int  # live, and `is_broken`
    old: int  # live, not broken, of another revision than the desired one
    ready: int  # live, not broken, of the desired revision, running and not ended


def count_cells(observed: list[ObservedCell], revision: int) -> CellCounts:
    live = [c for c in observed if c.desired_state != "DELETED"]
    healthy = [c for c in live if not is_broken(c)]
    return CellCounts(
        live=len(live),
        broken=len(live) - len(healthy),
        old=sum(1 for c in healthy if c.revision != revision),
        ready=sum(1 for c in healthy if c.revision == revision and _ready(c)),
    )


def steady_plan(desired: ServiceDesired, counts: CellCounts) -> ServicePlan | None:
    """`plan_service`'s plan when it can be told from counts alone, else None: a service that
    is not being deleted, has no failure to back off from, and has exactly `instances` live
    cells, none broken, all of the desired revision. Such a plan has no action; only how many
    cells are ready (and whether that is all of them) changes as its cells start. This is
    the state of every service whose cells are being started, and of every settled one: the
    controller looks at each of them every second without reading their cells."""
    if (
        desired.deleting
        or desired.failures
        or counts.broken
        or counts.old
        or counts.live != desired.instances
    ):
        return None
    n = desired.instances
    return ServicePlan((), ready=counts.ready, current=n, live=n, converged=counts.ready == n)
