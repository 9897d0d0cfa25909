"""numpy placement engine for large clusters: exact greedy placement, one vector pass per run.

`place.place` uses it when its cost model says so (beyond a few dozen hosts). Requests
arrive in runs of identical shape (a node group's instances, a service's replicas: same
resources and constraints, different ids), so the engine works per run, not per request:

1. One vector pass over the hosts finds every host the shape may use and how many members
   each can take (`cap`: free capacity, instancePerHost headroom, 1 if it publishes ports).
2. Host h's score for its j-th member is `(used_cpu + j*cpu)/cap_cpu + (used_mem + j*mem)/
   cap_mem` (minus the WEAK near bonus), increasing in j. Sequential greedy placement of k
   members therefore takes the k smallest (score, host rank) pairs, which a heap merge over
   the k best hosts by first score yields in order; no other host can win any of the k turns.

This is the same plan, bit for bit, as placing the requests one by one with a full scan
(`_small`), with no approximation: capacity is integer millicores/MB/GB and scores are
computed by the same float expressions in both engines. The cost is O(hosts) numpy work per
run plus O(k log k) Python per run, so many runs of one request over a huge cluster cost
~100 us each; a WEAK `near` on the request's own group is placed one request at a time
because every placement changes which hosts get the bonus.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from . import _reasons
from .model import (
    NEAR_BONUS,
    READY,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Unplaced,
    millicores,
)

__all__ = ["Table"]

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class Table:
    """Column store of one batch's hosts (sorted by id) and their growing usage."""

    def __init__(self, hosts: Sequence[HostSnapshot]) -> None:
        snaps = sorted(hosts, key=lambda h: h.id)
        self.snaps = snaps
        self.ids = [h.id for h in snaps]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("duplicate host ids")
        n = len(snaps)
        self.n = n
        self.states = [h.state for h in snaps]
        self.ready: BoolArray = np.fromiter((h.state == READY for h in snaps), np.bool_, n)

        def ints(values: list[int]) -> IntArray:
            return np.array(values, dtype=np.int64).reshape(n)

        self.cap_c = ints([millicores(h.capacity.cpu) for h in snaps])
        self.cap_m = ints([h.capacity.memory_mb for h in snaps])
        self.cap_d = ints([h.capacity.disk_gb for h in snaps])
        self.used_c = ints([millicores(h.used.cpu) for h in snaps])
        self.used_m = ints([h.used.memory_mb for h in snaps])
        self.used_d = ints([h.used.disk_gb for h in snaps])
        # Same zero-capacity convention as _small: divide by at least 1.
        self.div_c: FloatArray = np.maximum(self.cap_c, 1).astype(np.float64)
        self.div_m: FloatArray = np.maximum(self.cap_m, 1).astype(np.float64)
        self.groups: dict[str, dict[int, int]] = {}
        for i, h in enumerate(snaps):
            for g, count in h.groups.items():
                if count > 0:
                    self.groups.setdefault(g, {})[i] = count
        self._taken: dict[tuple[str, int], BoolArray] = {}
        self._label: dict[tuple[str, str], BoolArray] = {}
        self._zone: dict[frozenset[str], BoolArray] = {}
        self._static: dict[
            tuple[frozenset[tuple[str, str]], frozenset[str] | None, str], BoolArray
        ] = {}

    # -- masks ---------------------------------------------------------------------------

    def taken(self, port: tuple[str, int]) -> BoolArray:
        """Hosts where `port` is published; created on first use, then kept up to date."""
        mask = self._taken.get(port)
        if mask is None:
            mask = np.fromiter((port in h.used_ports for h in self.snaps), np.bool_, self.n)
            self._taken[port] = mask
        return mask

    def _label_mask(self, key: str, value: str) -> BoolArray:
        mask = self._label.get((key, value))
        if mask is None:
            mask = np.fromiter((h.labels.get(key) == value for h in self.snaps), np.bool_, self.n)
            self._label[(key, value)] = mask
        return mask

    def _zone_mask(self, zones: frozenset[str]) -> BoolArray:
        mask = self._zone.get(zones)
        if mask is None:
            mask = np.fromiter((h.zone in zones for h in self.snaps), np.bool_, self.n)
            self._zone[zones] = mask
        return mask

    def static(
        self, labels: Mapping[str, str], zones: frozenset[str] | None, isolation: str
    ) -> BoolArray:
        """READY hosts offering `isolation`, carrying `labels`, in `zones`: fixed for the whole
        batch, so cached."""
        key = (frozenset(labels.items()), zones, isolation)
        mask = self._static.get(key)
        if mask is None:
            mask = self.ready & np.fromiter(
                (isolation in h.isolation for h in self.snaps), np.bool_, self.n
            )
            for k, v in labels.items():
                mask &= self._label_mask(k, v)
            if zones is not None:
                mask &= self._zone_mask(zones)
            self._static[key] = mask
        return mask

    def members(self, group: str) -> BoolArray:
        mask = np.zeros(self.n, dtype=np.bool_)
        held = self.groups.get(group)
        if held:
            mask[np.fromiter(held.keys(), np.int64, len(held))] = True
        return mask

    def counts(self, group: str) -> IntArray:
        out = np.zeros(self.n, dtype=np.int64)
        held = self.groups.get(group)
        if held:
            out[np.fromiter(held.keys(), np.int64, len(held))] = np.fromiter(
                held.values(), np.int64, len(held)
            )
        return out

    # -- placement -----------------------------------------------------------------------

    def run(
        self,
        reqs: Sequence[PlacementRequest],
        placements: list[Placement],
        unplaced: list[Unplaced],
    ) -> None:
        """Place a run of requests that differ only in id, in order."""
        r = reqs[0]
        if r.near is not None and r.near == r.group and not r.near_strict and len(reqs) > 1:
            for one in reqs:
                self.run((one,), placements, unplaced)
            return
        ranks = self._choose(r, len(reqs))
        if ranks:
            self._commit(r, ranks)
            ids = self.ids
            placements.extend([Placement(q.id, ids[h]) for q, h in zip(reqs, ranks, strict=False)])
        if len(ranks) < len(reqs):
            reason = self.reason(r) or _reasons.FALLBACK
            unplaced.extend([Unplaced(q.id, reason) for q in reqs[len(ranks) :]])

    def _choose(self, r: PlacementRequest, k: int) -> list[int]:
        """Host ranks for the first (up to) k members of this shape, in placement order."""
        c = millicores(r.resources.cpu)
        m = r.resources.memory_mb
        d = r.resources.disk_gb
        mask = self.static(r.labels, r.zones, r.isolation)
        if r.ports:
            for p in r.ports:
                mask = mask & ~self.taken(p)
        near_mask = self.members(r.near) if r.near is not None else None
        if near_mask is not None and r.near_strict:
            mask = mask & near_mask
        cand = np.flatnonzero(mask)
        if cand.size == 0:
            return []
        cap: IntArray = np.full(cand.size, k, dtype=np.int64)
        for need, total, used in ((c, self.cap_c, self.used_c), (m, self.cap_m, self.used_m)):
            free = total[cand] - used[cand]
            cap = np.minimum(cap, free // need) if need > 0 else np.where(free >= 0, cap, 0)
        free_d = self.cap_d[cand] - self.used_d[cand]
        cap = np.minimum(cap, free_d // d) if d > 0 else np.where(free_d >= 0, cap, 0)
        if r.max_per_host is not None and r.group is not None:
            cap = np.minimum(cap, r.max_per_host - self.counts(r.group)[cand])
        if r.ports:
            cap = np.minimum(cap, 1)
        ok = cap > 0
        cand = cand[ok]
        if cand.size == 0:
            return []
        cap = cap[ok]
        uc = self.used_c[cand]
        um = self.used_m[cand]
        dc = self.div_c[cand]
        dm = self.div_m[cand]
        key: FloatArray = (uc + c) / dc + (um + m) / dm
        bonus: FloatArray | None = None
        if near_mask is not None and not r.near_strict:
            bonus = np.where(near_mask[cand], NEAR_BONUS, 0.0)
            key = key - bonus
        if k == 1:
            # argmin returns the first minimum and cand is in rank (host id) order.
            return [int(cand[int(np.argmin(key))])]
        if cand.size > k:
            # Only hosts whose first score is among the k smallest can win a turn; ties at
            # the threshold are all kept so the heap breaks them by rank.
            threshold = np.partition(key, k - 1)[k - 1]
            sel = np.flatnonzero(key <= threshold)
            cand, cap, uc, um = cand[sel], cap[sel], uc[sel], um[sel]
            key, dc, dm = key[sel], dc[sel], dm[sel]
            if bonus is not None:
                bonus = bonus[sel]
        return _merge(k, c, m, cand, cap, key, uc, um, dc, dm, bonus)

    def _commit(self, r: PlacementRequest, ranks: list[int]) -> None:
        at = np.array(ranks, dtype=np.int64)
        c = millicores(r.resources.cpu)
        if c:
            np.add.at(self.used_c, at, c)
        if r.resources.memory_mb:
            np.add.at(self.used_m, at, r.resources.memory_mb)
        if r.resources.disk_gb:
            np.add.at(self.used_d, at, r.resources.disk_gb)
        for p in r.ports:
            self.taken(p)[at] = True
        if r.group is not None:
            held = self.groups.setdefault(r.group, {})
            for h in ranks:
                held[h] = held.get(h, 0) + 1

    # -- reasons -------------------------------------------------------------------------

    def reason(self, r: PlacementRequest) -> str | None:
        """The same pipeline as `_small.explain_states`, over the columns."""
        if self.n == 0:
            return _reasons.NO_HOSTS
        if not self.ready.any():
            return _reasons.not_ready(self.states)
        mask = self.static({}, None, r.isolation)
        if not mask.any():
            return _reasons.isolation(r.isolation, int(self.ready.sum()))
        if r.labels:
            mask = self.static(r.labels, None, r.isolation)
            if not mask.any():
                return _reasons.labels(r.labels)
        if r.zones is not None:
            mask = self.static(r.labels, r.zones, r.isolation)
            if not mask.any():
                return _reasons.zones(r.zones, r.labels)
        if r.near is not None and r.near_strict:
            mask = mask & self.members(r.near)
            if not mask.any():
                return _reasons.near(r.near)
        cand = np.flatnonzero(mask)
        narrowed: list[str] = []
        for dim, need, total, used in (
            ("cpu", millicores(r.resources.cpu), self.cap_c, self.used_c),
            ("memory", r.resources.memory_mb, self.cap_m, self.used_m),
            ("disk", r.resources.disk_gb, self.cap_d, self.used_d),
        ):
            free = total[cand] - used[cand]
            fits = free >= need
            if not fits.any():
                return _reasons.resource(dim, need, int(free.max()), narrowed)
            if not fits.all():
                narrowed.append(dim)
                cand = cand[fits]
        if r.ports:
            free_all = np.ones(cand.size, dtype=np.bool_)
            for p in sorted(r.ports):
                t = self.taken(p)[cand]
                if t.all():
                    return _reasons.port_taken(p)
                free_all &= ~t
            if not free_all.any():
                return _reasons.ports_together(r.ports)
            cand = cand[free_all]
        if (
            r.max_per_host is not None
            and r.group is not None
            and (self.counts(r.group)[cand] >= r.max_per_host).all()
        ):
            return _reasons.per_host(r.max_per_host, r.group, int(cand.size))
        return None


def _merge(
    k: int,
    c: int,
    m: int,
    cand: IntArray,
    cap: IntArray,
    key: FloatArray,
    uc: IntArray,
    um: IntArray,
    dc: FloatArray,
    dm: FloatArray,
    bonus: FloatArray | None,
) -> list[int]:
    """Greedy turns over the candidate hosts: the k smallest (score, rank) pairs in order.

    Scores after the first are recomputed in Python with the same expression the one-by-one
    engine uses, so floats (and therefore ties) agree exactly.
    """
    ranks: list[int] = cand.tolist()
    caps: list[int] = cap.tolist()
    ucs: list[int] = uc.tolist()
    ums: list[int] = um.tolist()
    dcs: list[float] = dc.tolist()
    dms: list[float] = dm.tolist()
    bon: list[float] | None = bonus.tolist() if bonus is not None else None
    heap = list(zip(key.tolist(), ranks, range(len(ranks)), strict=True))
    heapq.heapify(heap)
    taken = [0] * len(ranks)
    out: list[int] = []
    replace = heapq.heapreplace
    while heap and len(out) < k:
        _, rank, i = heap[0]
        out.append(rank)
        j = taken[i] + 1
        taken[i] = j
        if j < caps[i]:
            j += 1
            nxt = (ucs[i] + j * c) / dcs[i] + (ums[i] + j * m) / dms[i]
            if bon is not None:
                nxt = nxt - bon[i]
            replace(heap, (nxt, rank, i))
        else:
            heapq.heappop(heap)
    return out
