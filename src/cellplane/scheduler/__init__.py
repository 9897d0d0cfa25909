"""Pure placement of cells on hosts: `(snapshot, requests, now) -> plan`, no I/O.

The controller calls `place` for each batch of pending cells, the cluster planner for node
groups, and the API's admission calls `explain` to refuse requests that could never fit.
`cellplane.scheduler.testing` holds builders and a plan checker for tests.
"""

from .model import (
    BINPACK,
    ISOLATION_CLASSES,
    POLICIES,
    SPREAD,
    Affinity,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Plan,
    Resources,
    Unplaced,
)
from .place import explain, place

__all__ = [
    "BINPACK",
    "ISOLATION_CLASSES",
    "POLICIES",
    "SPREAD",
    "Affinity",
    "HostSnapshot",
    "Placement",
    "PlacementRequest",
    "Plan",
    "Resources",
    "Unplaced",
    "explain",
    "place",
]
