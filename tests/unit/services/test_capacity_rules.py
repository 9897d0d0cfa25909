"""The pure rules of `services.capacity`: who reserves, the nearest flavor, what is short."""

from __future__ import annotations

import pytest

from cellplane.services.capacity import nearest_flavor, reserves_row, shortfall

FLAVORS = [("SMALL", 0.5, 512), ("MEDIUM", 1.0, 1024), ("LARGE", 2.0, 4096)]


@pytest.mark.parametrize(
    ("state", "desired", "ended", "reserves"),
    [
        ("RUNNING", "RUNNING", False, True),
        ("PENDING", "RUNNING", False, True),
        ("RUNNING", "STOPPED", False, True),  # still stopping: the container runs
        ("STOPPED", "STOPPED", False, False),
        ("EXITED", "STOPPED", False, False),
        ("EXITED", "RUNNING", False, True),  # its restart policy brings it back
        ("EXITED", "RUNNING", True, False),  # ended for good
        ("DELETING", "DELETED", False, True),
    ],
)
def test_who_reserves(state: str, desired: str, ended: bool, reserves: bool) -> None:
    assert reserves_row(state, desired, ended) is reserves


def test_nearest_flavor() -> None:
    assert nearest_flavor(FLAVORS, cpu=None, memory_mb=600) == ("MEDIUM", 1.0, 1024)
    assert nearest_flavor(FLAVORS, cpu=None, memory_mb=512) == ("SMALL", 0.5, 512)
    assert nearest_flavor(FLAVORS, cpu=1.5, memory_mb=None) == ("LARGE", 2.0, 4096)
    assert nearest_flavor(FLAVORS, cpu=None, memory_mb=10**6) == ("LARGE", 2.0, 4096)
    assert nearest_flavor(FLAVORS, cpu=1, memory_mb=1) is None  # both given: nothing to pick
    assert nearest_flavor([], cpu=1, memory_mb=None) is None


def test_shortfall_names_each_short_dimension() -> None:
    cap = {"cpu": 4.0, "memory_mb": 4096, "disk_gb": 10}
    assert shortfall({"cpu": 1, "memory_mb": 1024, "disk_gb": 1}, cap, {"cpu": 3}) is None
    assert shortfall(
        {"cpu": 1.5, "memory_mb": 4096, "disk_gb": 0}, cap, {"cpu": 3, "memory_mb": 1}
    ) == ("needs 1.5 cpu, 1 free; needs 4096 MB memory, 4095 MB free")
