"""Value types of the pure scheduler: what goes in (hosts, requests) and what comes out (a plan).

The controller builds `HostSnapshot`s from the state store and `PlacementRequest`s from pending
cells; the cluster planner builds requests for node groups; the API's admission builds one
request to ask `explain`. Everything here is immutable so a snapshot can be shared freely.

cpu is fractional cores on the outside but is accounted in whole millicores inside the
scheduler (`millicores`), so that capacity arithmetic is exact: ten 0.1-cpu cells fill a
1-cpu host, where float sums would over- or under-shoot. Checkers must use the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AFFINITY_WEIGHT",
    "BINPACK",
    "HOST_STATES",
    "ISOLATION_CLASSES",
    "NEAR_BONUS",
    "POLICIES",
    "READY",
    "SPREAD",
    "Affinity",
    "HostSnapshot",
    "Placement",
    "PlacementRequest",
    "Plan",
    "Resources",
    "Unplaced",
    "millicores",
]

READY = "READY"
#: Isolation classes, weakest first: `standard` shares the host kernel (runc), `sandbox` runs
#: the cell on a user-space kernel (gVisor's runsc). A host offers the classes its agent found
#: its engine can run; a request is placed only on a host offering its class.
ISOLATION_CLASSES = ("standard", "sandbox")
HOST_STATES = ("READY", "SUSPECT", "DOWN", "MAINTENANCE")

# The spread score is cpu_share + memory_share after placement (0..2 on a host that fits).
# A WEAK `near` host gets this subtracted: a host holding the associated group wins unless it
# is more than half full (on the 0..1 average scale) beyond the least utilised alternative.
NEAR_BONUS = 1.0

# Placement policies: spread (the default) puts a cell on the least utilised host that fits,
# binpack on the most utilised one (fewer hosts busy, whole hosts left free).
SPREAD = "spread"
BINPACK = "binpack"
POLICIES = (SPREAD, BINPACK)

# A soft (anti-)affinity term moves the score by this much per matching cell: more than the
# whole range of the resource score (0..2), so a preference wins over utilisation, never over
# a hard constraint.
AFFINITY_WEIGHT = 2.5


def millicores(cpu: float) -> int:
    """The cpu amount in whole millicores, the unit all capacity checks use."""
    return round(cpu * 1000)


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of cpu (cores, fractional), memory (MB) and disk (GB)."""

    cpu: float
    memory_mb: int
    disk_gb: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.cpu) or self.cpu < 0:
            raise ValueError(f"cpu must be a finite number >= 0, got {self.cpu!r}")
        if self.memory_mb < 0 or self.disk_gb < 0:
            raise ValueError("memory_mb and disk_gb must be >= 0")


@dataclass(frozen=True, slots=True)
class Affinity:
    """Be with (or, `anti`, away from) the cells whose labels carry all of `selector`.

    Hard (`soft` False): a host breaking it is not a candidate. Soft: a preference, scored.
    A hard affinity whose selector matches no cell anywhere is satisfied by any host when the
    request's own labels match it (the first member of a group that wants to be together).
    """

    selector: Mapping[str, str]
    anti: bool = False
    soft: bool = False

    def __post_init__(self) -> None:
        if not self.selector:
            raise ValueError("an affinity selector needs at least one label")

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.selector.items())

    def count(self, cells: Sequence[Mapping[str, str]]) -> int:
        """How many of `cells` (their labels) the selector matches."""
        return sum(1 for c in cells if self.matches(c))

    def describe(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """One host as the scheduler sees it at the start of a batch."""

    id: str
    state: str  # "READY" | "SUSPECT" | "DOWN" | "MAINTENANCE"; only READY hosts take work
    capacity: Resources
    used: Resources
    labels: Mapping[str, str] = field(default_factory=dict)
    zone: str | None = None
    used_ports: frozenset[tuple[str, int]] = frozenset()  # (protocol, host_port) published
    groups: Mapping[str, int] = field(default_factory=dict)  # group -> members on this host
    cells: tuple[Mapping[str, str], ...] = ()  # labels of the cells placed on this host
    isolation: frozenset[str] = frozenset({"standard"})  # the isolation classes it offers


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """One cell (or node-group member) to place, with its placement constraints."""

    id: str
    resources: Resources
    labels: Mapping[str, str] = field(default_factory=dict)  # host must carry all of these
    ports: frozenset[tuple[str, int]] = frozenset()  # host ports it publishes
    group: str | None = None  # the group this request is a member of
    max_per_host: int | None = None  # at most this many members of `group` on one host
    zones: frozenset[str] | None = None  # allowed host zones, None = any
    near: str | None = None  # be on a host that has a member of this group
    near_strict: bool = False  # STRICT: must; WEAK: prefer
    policy: str = SPREAD  # spread | binpack
    cell_labels: Mapping[str, str] = field(default_factory=dict)  # the cell's own labels
    affinity: tuple[Affinity, ...] = ()  # (anti-)affinity with other cells, hard or soft
    isolation: str = "standard"  # the host must offer this isolation class

    def reads_placed_cells(self) -> bool:
        """Whether placing it looks at what is placed already beyond the hosts' usage: the
        ports in use (`HostSnapshot.used_ports`) or the placed cells' labels (`.cells`, for
        affinity). Without either, a snapshot without them gives the same plan."""
        return bool(self.ports or self.affinity)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.max_per_host is not None:
            if self.group is None:
                raise ValueError("max_per_host needs a group")
            if self.max_per_host < 1:
                raise ValueError(f"max_per_host must be >= 1, got {self.max_per_host}")


@dataclass(frozen=True, slots=True)
class Placement:
    """Request `request_id` goes to host `host_id`."""

    request_id: str
    host_id: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    """Request `request_id` fits nowhere; `reason` names the binding constraint for humans."""

    request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The result of one `place` call; placements are in request order."""

    placements: tuple[Placement, ...]
    unplaced: tuple[Unplaced, ...]
