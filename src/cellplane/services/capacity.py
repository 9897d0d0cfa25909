"""What a cell reserves on its host, and the size of a cell given only its cpu or its memory.

The rule (as Kubernetes and Nomad count a terminated workload): a placed cell reserves its cpu,
memory, disk and published ports while it runs or is on its way to run. A cell that is stopped
(desired STOPPED, container STOPPED or EXITED) or has ended for good (its container exited and its
restart policy does not bring it back: `ended_at` set) reserves nothing; it keeps its host (its
container and volumes are there), and starting it again checks that it still fits there
(`shortfall`). Used by `services.hosts` (the scheduler's snapshot, `host ls`/`host show` usage) and
`services.cells` (start, restart, and sizing at create). A cell made but not started (`docker
create`: desired CREATED) reserves as a running one does: its start must not be refused for room.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_

from cellplane.state.models import Cell

__all__ = [
    "PLACED_DESIRED",
    "RESTING_STATES",
    "nearest_flavor",
    "reserves",
    "reserves_row",
    "shortfall",
]

#: Desired states of a cell that the scheduler places: to run, or to be made ready to
#: (`docker create`: its container made, not started).
PLACED_DESIRED = ("RUNNING", "CREATED")
#: Container states in which a cell holds no cpu or memory on its host.
RESTING_STATES = ("STOPPED", "EXITED", "FAILED")


@functools.cache
def reserves() -> ColumnElement[bool]:
    """SQL: the placed cell counts against its host (see the module docstring). Built once:
    an expression is immutable, and building it cost more than the query it filters."""
    resting = and_(
        Cell.state.in_(RESTING_STATES),
        or_(Cell.desired_state == "STOPPED", Cell.ended_at.is_not(None)),
    )
    return and_(Cell.host_id.is_not(None), not_(resting))


def reserves_row(state: str, desired_state: str, ended: bool) -> bool:
    """The same rule for one cell's values (pure)."""
    return not (state in RESTING_STATES and (desired_state == "STOPPED" or ended))


def nearest_flavor(
    flavors: Sequence[tuple[str, float, int]], *, cpu: float | None, memory_mb: int | None
) -> tuple[str, float, int] | None:
    """The flavor (name, cpu, memory_mb) nearest to a size given by one dimension: the smallest
    whose given dimension is at least the request, else the largest. `cell run --memory 2G` gets
    the cpu of the smallest flavor with 2 GB or more (and `--cpu 1` that flavor's memory)."""
    if not flavors or (cpu is None) == (memory_mb is None):
        return None
    index = 1 if cpu is not None else 2
    wanted = float(cpu if cpu is not None else memory_mb or 0)
    ordered = sorted(flavors, key=lambda f: (float(f[index]), f[0]))
    return next((f for f in ordered if float(f[index]) >= wanted), ordered[-1])


def shortfall(
    need: dict[str, float], capacity: dict[str, float], used: dict[str, float]
) -> str | None:
    """Why a cell needing `need` no longer fits beside `used` within `capacity` (None: it fits).
    Names each short dimension with what it needs and what is free: "needs 2048 MB memory, 512 MB
    free"."""
    short: list[str] = []
    for dim, unit, what in (
        ("cpu", "", " cpu"),
        ("memory_mb", " MB", " memory"),
        ("disk_gb", " GB", " disk"),
    ):
        free = max(capacity.get(dim, 0) - used.get(dim, 0), 0)
        if need.get(dim, 0) > free + 1e-9:
            short.append(f"needs {_num(need[dim])}{unit}{what}, {_num(free)}{unit} free")
    return "; ".join(short) or None


def _num(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number == int(number) else f"{number:g}"
