"""A running cell's container holds the CPU quota and memory limit asked for, in its cgroup.

The agent starts the container without a CPU quota (a quota on a starting container slows the
runtime's own start-up) and sets the limits right after the start, before it reports RUNNING. So
by the time the API says RUNNING the kernel enforces both: read from the container's cgroup
files, not from what the engine reports.
"""

from __future__ import annotations

import pytest

from cellplane.testing.cgroups import cgroup_limits

from .conftest import Cells, finish

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _limits_of(cells: Cells, container_id: str) -> tuple[float | None, int | None]:
    pid = int(cells.engine._api.inspect_container(container_id)["State"]["Pid"])
    got = cgroup_limits(pid)
    return got.cpu, got.memory_bytes


@pytest.mark.parametrize(("cpu", "memory_mb"), [(0.01, 16), (0.25, 48)])
def test_running_cell_has_its_quota_and_memory_limit(
    cells: Cells, cpu: float, memory_mb: int
) -> None:
    cell = cells.run("limits", cpu=cpu, memory_mb=memory_mb)
    assert cell["state"] == "RUNNING"
    assert _limits_of(cells, cell["container_id"]) == (pytest.approx(cpu), memory_mb * MIB)


def test_restarted_cell_gets_its_quota_again(cells: Cells) -> None:
    cell = cells.run("relimit", cpu=0.05, memory_mb=24)
    task = cells.c.restart_cell(cell["id"])
    assert finish(cells.c, task["id"])["state"] == "COMPLETED"
    again = cells.wait_state(cell["id"], "RUNNING")
    assert again["container_id"] == cell["container_id"]  # same container, started again
    assert _limits_of(cells, again["container_id"]) == (pytest.approx(0.05), 24 * MIB)
