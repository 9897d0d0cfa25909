"""The scheduler's entry points: `place` a batch of requests, `explain` why one cannot fit.

The controller calls `place` for every batch of pending cells and the cluster planner for
node groups; the API's admission calls `explain` on every cell create to refuse, with a
message, a request that could never fit. Both are pure: the answer depends only on the
arguments.

Policy: only READY hosts take work; a host must offer the request's isolation class, carry all requested labels, be in an allowed
zone, publish none of the requested host ports yet, stay under the group's instancePerHost,
hold a member of the `near` group when the association is STRICT, and have the free cpu,
memory and disk. Among those, the host with the lowest cpu share + memory share after
placement wins (spread), a WEAK `near` host gets `NEAR_BONUS` off, ties go to the smallest
host id. Requests are handled in order and each placement is accounted before the next.

A request may ask for `binpack` (the most utilised host that fits wins instead) and carry cell
(anti-)affinity terms (`model.Affinity`): a hard term filters hosts by the labels of the cells
they run, a soft one moves the score by `AFFINITY_WEIGHT` (per matching cell when anti).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _small
from .model import SPREAD, HostSnapshot, Placement, PlacementRequest, Plan, Unplaced

__all__ = ["SMALL_CLUSTER", "explain", "place"]

# Below this many hosts `explain` scans in Python rather than building numpy columns.
SMALL_CLUSTER = 48

# Rough costs in microseconds on the reference 2-core machine (bench/scheduler.py --small):
# the Python engine pays per (host, request) pair, the numpy engine per run and per host.
_PY_PER_PAIR = 0.3
_NP_PER_RUN = 25.0
_NP_PER_RUN_HOST = 0.012
_NP_PER_REQUEST = 1.5


def place(
    hosts: Sequence[HostSnapshot], requests: Sequence[PlacementRequest], *, now: float
) -> Plan:
    """Place `requests` in order on `hosts`; deterministic for equal input.

    `now` is part of the signature so time-dependent policy can be added without reading a
    clock; the current policy does not depend on it. Both engines give the same plan; the
    cheaper one for this input's size and shape is used.
    """
    del now
    if any(_needs_small(r) for r in requests):
        # Binpack and cell (anti-)affinity change every score after each placement: the
        # per-request scan is exact for them, the numpy engine's run merge is not.
        return _small.place_small(hosts, requests)
    runs = _runs(requests)
    n = len(hosts)
    python_cost = _PY_PER_PAIR * n * len(requests)
    numpy_cost = len(runs) * (_NP_PER_RUN + _NP_PER_RUN_HOST * n) + _NP_PER_REQUEST * len(requests)
    if python_cost <= numpy_cost:
        return _small.place_small(hosts, requests)
    return _place_runs(hosts, requests, runs)


def place_table(hosts: Sequence[HostSnapshot], requests: Sequence[PlacementRequest]) -> Plan:
    """The numpy engine, whatever the input size (tests compare it with the Python one)."""
    return _place_runs(hosts, requests, _runs(requests))


def _place_runs(
    hosts: Sequence[HostSnapshot],
    requests: Sequence[PlacementRequest],
    runs: list[tuple[int, int]],
) -> Plan:
    from . import _table  # numpy only when a batch is big enough to pay for it (~12 MB)

    table = _table.Table(hosts)
    placements: list[Placement] = []
    unplaced: list[Unplaced] = []
    for i, j in runs:
        table.run(requests[i:j], placements, unplaced)
    return Plan(tuple(placements), tuple(unplaced))


def _needs_small(r: PlacementRequest) -> bool:
    return r.policy != SPREAD or bool(r.affinity)


def _runs(requests: Sequence[PlacementRequest]) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive requests that differ only in id."""
    out: list[tuple[int, int]] = []
    n = len(requests)
    i = 0
    while i < n:
        r = requests[i]
        j = i + 1
        # Builders usually share the field objects, so identity settles most comparisons.
        res, labels, ports, zones = r.resources, r.labels, r.ports, r.zones
        group, cap, near, strict = r.group, r.max_per_host, r.near, r.near_strict
        iso = r.isolation
        while j < n:
            q = requests[j]
            if not (
                (q.resources is res or q.resources == res)
                and q.group == group
                and q.max_per_host == cap
                and q.near == near
                and q.near_strict == strict
                and q.isolation == iso
                and (q.labels is labels or q.labels == labels)
                and (q.ports is ports or q.ports == ports)
                and (q.zones is zones or q.zones == zones)
            ):
                break
            j += 1
        out.append((i, j))
        i = j
    return out


def explain(hosts: Sequence[HostSnapshot], request: PlacementRequest) -> str | None:
    """Why `request` fits on no host at current usage (naming the binding constraint), or None."""
    if len(hosts) <= SMALL_CLUSTER or _needs_small(request):
        return _small.explain_states(_small.states_of(hosts), request)
    from . import _table

    return _table.Table(hosts).reason(request)
