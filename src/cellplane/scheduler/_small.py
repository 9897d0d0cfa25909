"""Pure-Python placement engine: exact greedy placement by scanning every host per request.

`place.place` uses it for small host counts (the common case: 1-50 requests over 1-10 hosts),
where numpy's per-call overhead would dominate, and `place.explain` uses its reason pipeline.
It is also the reference the numpy engine (`_table`) is tested against: both must return the
same plan, message for message, for the same input.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence

from . import _reasons
from .model import (
    AFFINITY_WEIGHT,
    BINPACK,
    NEAR_BONUS,
    READY,
    Affinity,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Plan,
    Unplaced,
    millicores,
)

__all__ = ["HostState", "explain_states", "hard_terms", "place_small", "states_of"]


class HostState:
    """Mutable per-batch view of one host: usage, ports and group counts grow as we place."""

    __slots__ = (
        "cap_c",
        "cap_d",
        "cap_m",
        "cells",
        "counts",
        "div_c",
        "div_m",
        "groups",
        "id",
        "isolation",
        "labels",
        "ports",
        "ready",
        "state",
        "used_c",
        "used_d",
        "used_m",
        "zone",
    )

    def __init__(self, h: HostSnapshot) -> None:
        self.id = h.id
        self.state = h.state
        self.ready = h.state == READY
        self.labels = h.labels
        self.isolation = h.isolation
        self.zone = h.zone
        self.cap_c = millicores(h.capacity.cpu)
        self.cap_m = h.capacity.memory_mb
        self.cap_d = h.capacity.disk_gb
        self.used_c = millicores(h.used.cpu)
        self.used_m = h.used.memory_mb
        self.used_d = h.used.disk_gb
        # Shares are divided by capacity; a zero-capacity dimension can only hold zero-need
        # requests, whose share is then 0 / 1.
        self.div_c = max(self.cap_c, 1)
        self.div_m = max(self.cap_m, 1)
        self.ports = set(h.used_ports)
        self.groups = dict(h.groups)
        self.cells = list(h.cells)
        # How many of `cells` each selector seen in this batch matches, kept as cells are
        # added: a soft anti-affinity scores every host for every request, and counting its
        # cells each time made a batch O(requests x cells).
        self.counts: dict[tuple[tuple[str, str], ...], int] = {}

    def count(self, a: Affinity, key: tuple[tuple[str, str], ...] | None = None) -> int:
        key = key or _key(a)
        n = self.counts.get(key)
        if n is None:
            n = self.counts[key] = a.count(self.cells)
        return n

    def add(self, labels: Mapping[str, str]) -> None:
        self.cells.append(labels)
        for key in self.counts:
            if all(labels.get(k) == v for k, v in key):
                self.counts[key] += 1


def _key(a: Affinity) -> tuple[tuple[str, str], ...]:
    """The selector as a hashable key."""
    return tuple(sorted(a.selector.items()))


def hard_terms(states: Sequence[HostState], r: PlacementRequest) -> list[Affinity]:
    """The hard (anti-)affinity terms that bind `r`: a hard affinity whose selector matches no
    cell on any host is waived when `r` itself matches it (the first of its group)."""
    out = []
    for a in r.affinity:
        if a.soft:
            continue
        if not a.anti and a.matches(r.cell_labels) and not any(a.count(s.cells) for s in states):
            continue
        out.append(a)
    return out


def _breaks(s: HostState, terms: Sequence[Affinity]) -> Affinity | None:
    """The first hard term host `s` breaks, or None."""
    for a in terms:
        n = s.count(a)
        if (a.anti and n) or (not a.anti and not n):
            return a
    return None


def _preference(
    s: HostState, r: PlacementRequest, keys: Sequence[tuple[tuple[str, str], ...]]
) -> float:
    """Score change from soft terms: lower is better (anti counts every matching cell).
    `keys`: the selectors of `r.affinity` as `_key` makes them (computed once per request)."""
    adj = 0.0
    for a, key in zip(r.affinity, keys, strict=True):
        if not a.soft:
            continue
        n = s.count(a, key)
        if a.anti:
            adj += AFFINITY_WEIGHT * n
        elif n:
            adj -= AFFINITY_WEIGHT
    return adj


def states_of(hosts: Sequence[HostSnapshot]) -> list[HostState]:
    """Host states sorted by id, so that a strict `<` scan breaks score ties by host id."""
    states = sorted((HostState(h) for h in hosts), key=lambda s: s.id)
    for a, b in itertools.pairwise(states):
        if a.id == b.id:
            raise ValueError(f"duplicate host id {a.id!r}")
    return states


_SAME = (
    "resources",
    "labels",
    "ports",
    "group",
    "max_per_host",
    "zones",
    "near",
    "near_strict",
    "policy",
    "cell_labels",
    "affinity",
    "isolation",
)
#: A run of at least this many requests alike but for their ids is placed with a heap.
RUN_MIN = 8


def _alike(a: PlacementRequest, b: PlacementRequest) -> bool:
    for f in _SAME:
        x, y = getattr(a, f), getattr(b, f)
        if x is not y and x != y:
            return False
    return True


def _score(
    s: HostState, r: PlacementRequest, keys: Sequence[tuple[tuple[str, str], ...]]
) -> float | None:
    """The scan's key of host `s` for `r` (None: `s` cannot take it); `r` has no hard terms."""
    c = millicores(r.resources.cpu)
    m = r.resources.memory_mb
    d = r.resources.disk_gb
    if c > s.cap_c - s.used_c or m > s.cap_m - s.used_m or d > s.cap_d - s.used_d:
        return None
    if r.isolation not in s.isolation:
        return None
    if r.labels and any(s.labels.get(k) != v for k, v in r.labels.items()):
        return None
    if r.zones is not None and s.zone not in r.zones:
        return None
    near = r.near
    has_near = near is not None and s.groups.get(near, 0) > 0
    if r.near_strict and near is not None and not has_near:
        return None
    if r.ports and not r.ports.isdisjoint(s.ports):
        return None
    if r.max_per_host is not None and s.groups.get(r.group or "", 0) >= r.max_per_host:
        return None
    key = (s.used_c + c) / s.div_c + (s.used_m + m) / s.div_m
    if r.policy == BINPACK:
        key = -key
    if has_near and not r.near_strict:
        key -= NEAR_BONUS
    if r.affinity:
        key += _preference(s, r, keys)
    return key


def _place_run(
    states: Sequence[HostState],
    ready: Sequence[HostState],
    run: Sequence[PlacementRequest],
    placements: list[Placement],
    unplaced: list[Unplaced],
) -> None:
    """Place requests alike but for their ids, with soft terms only: what the scan does, with a
    heap of (key, host id). Placing on a host changes only that host's key (its usage, ports,
    groups and cells), so the best host is the heap's top once that host is pushed back."""
    r = run[0]
    keys = [_key(a) for a in r.affinity]
    heap = []
    for i, s in enumerate(ready):
        k = _score(s, r, keys)
        if k is not None:
            heap.append((k, s.id, i))
    heapq.heapify(heap)
    for q in run:
        if not heap:
            unplaced.append(Unplaced(q.id, explain_states(states, q) or _reasons.FALLBACK))
            continue
        _, _, i = heapq.heappop(heap)
        best = ready[i]
        _take(best, q)
        placements.append(Placement(q.id, best.id))
        k = _score(best, r, keys)
        if k is not None:
            heapq.heappush(heap, (k, best.id, i))


def _take(best: HostState, r: PlacementRequest) -> None:
    best.used_c += millicores(r.resources.cpu)
    best.used_m += r.resources.memory_mb
    best.used_d += r.resources.disk_gb
    if r.ports:
        best.ports.update(r.ports)
    if r.group is not None:
        best.groups[r.group] = best.groups.get(r.group, 0) + 1
    best.add(r.cell_labels)


def place_small(hosts: Sequence[HostSnapshot], requests: Sequence[PlacementRequest]) -> Plan:
    states = states_of(hosts)
    ready = [s for s in states if s.ready]
    placements: list[Placement] = []
    unplaced: list[Unplaced] = []
    i, n = 0, len(requests)
    while i < n:
        r = requests[i]
        j = i + 1
        if all(a.soft for a in r.affinity):
            while j < n and _alike(r, requests[j]):
                j += 1
        if j - i >= RUN_MIN:
            _place_run(states, ready, requests[i:j], placements, unplaced)
        else:
            _scan(states, ready, requests[i:j], placements, unplaced)
        i = j
    return Plan(tuple(placements), tuple(unplaced))


def _scan(
    states: Sequence[HostState],
    ready: Sequence[HostState],
    requests: Sequence[PlacementRequest],
    placements: list[Placement],
    unplaced: list[Unplaced],
) -> None:
    """Each request in turn: every ready host scanned, the lowest key wins (ties: the smaller
    host id, the first in `states`' order)."""
    for r in requests:
        c = millicores(r.resources.cpu)
        m = r.resources.memory_mb
        d = r.resources.disk_gb
        want = list(r.labels.items())
        zones = r.zones
        near = r.near
        strict = r.near_strict
        ports = r.ports
        group = r.group
        cap = r.max_per_host
        terms = hard_terms(states, r) if r.affinity else []
        keys = [_key(a) for a in r.affinity]
        binpack = r.policy == BINPACK
        iso = r.isolation
        best: HostState | None = None
        best_key = 0.0
        for s in ready:
            if c > s.cap_c - s.used_c or m > s.cap_m - s.used_m or d > s.cap_d - s.used_d:
                continue
            if iso not in s.isolation:
                continue
            if want and any(s.labels.get(k) != v for k, v in want):
                continue
            if zones is not None and s.zone not in zones:
                continue
            has_near = near is not None and s.groups.get(near, 0) > 0
            if strict and near is not None and not has_near:
                continue
            if ports and not ports.isdisjoint(s.ports):
                continue
            if cap is not None and s.groups.get(group or "", 0) >= cap:
                continue
            if terms and _breaks(s, terms) is not None:
                continue
            key = (s.used_c + c) / s.div_c + (s.used_m + m) / s.div_m
            if binpack:
                key = -key
            if has_near and not strict:
                key -= NEAR_BONUS
            if r.affinity:
                key += _preference(s, r, keys)
            if best is None or key < best_key:
                best, best_key = s, key
        if best is None:
            unplaced.append(Unplaced(r.id, explain_states(states, r) or _reasons.FALLBACK))
            continue
        best.used_c += c
        best.used_m += m
        best.used_d += d
        if ports:
            best.ports.update(ports)
        if group is not None:
            best.groups[group] = best.groups.get(group, 0) + 1
        best.add(r.cell_labels)
        placements.append(Placement(r.id, best.id))


def explain_states(states: Sequence[HostState], r: PlacementRequest) -> str | None:
    """Run the filter pipeline; the stage that empties the candidate list names the reason."""
    if not states:
        return _reasons.NO_HOSTS
    cand = [s for s in states if s.ready]
    if not cand:
        return _reasons.not_ready(s.state for s in states)
    iso = r.isolation
    offering = [s for s in cand if iso in s.isolation]
    if not offering:
        return _reasons.isolation(iso, len(cand))
    cand = offering
    if r.labels:
        want = list(r.labels.items())
        cand = [s for s in cand if all(s.labels.get(k) == v for k, v in want)]
        if not cand:
            return _reasons.labels(r.labels)
    if r.zones is not None:
        zones = r.zones
        cand = [s for s in cand if s.zone in zones]
        if not cand:
            return _reasons.zones(zones, r.labels)
    if r.near is not None and r.near_strict:
        near = r.near
        cand = [s for s in cand if s.groups.get(near, 0) > 0]
        if not cand:
            return _reasons.near(near)
    for a in hard_terms(states, r) if r.affinity else []:
        cand = [s for s in cand if _breaks(s, [a]) is None]
        if not cand:
            return _reasons.affinity(a.describe(), anti=a.anti)
    narrowed: list[str] = []
    for dim, need in (
        ("cpu", millicores(r.resources.cpu)),
        ("memory", r.resources.memory_mb),
        ("disk", r.resources.disk_gb),
    ):
        free = [_free(s, dim) for s in cand]
        fits = [s for s, f in zip(cand, free, strict=True) if f >= need]
        if not fits:
            return _reasons.resource(dim, need, max(free), narrowed)
        if len(fits) < len(cand):
            narrowed.append(dim)
        cand = fits
    if r.ports:
        for p in sorted(r.ports):
            if all(p in s.ports for s in cand):
                return _reasons.port_taken(p)
        ports = r.ports
        cand = [s for s in cand if ports.isdisjoint(s.ports)]
        if not cand:
            return _reasons.ports_together(ports)
    if r.max_per_host is not None and r.group is not None:
        group, cap = r.group, r.max_per_host
        if all(s.groups.get(group, 0) >= cap for s in cand):
            return _reasons.per_host(cap, group, len(cand))
    return None


def _free(s: HostState, dim: str) -> int:
    if dim == "cpu":
        return s.cap_c - s.used_c
    if dim == "memory":
        return s.cap_m - s.used_m
    return s.cap_d - s.used_d
