"""Where a cluster's nodes go: the spec's placement policies, honoured where the hosts allow
and reported where they cannot be.

Serengeti's placement policies (``instancePerHost``, ``groupAssociations`` STRICT/WEAK,
``groupRacks`` mapped to host zones) assume many hosts. On one host (or too few) some cannot
hold; refusing the cluster would make every published spec unusable on a small deployment, so
:func:`place_nodes` relaxes them one at a time, only for the node groups that need it, in the
order that gives up least: a rack pinning first (the node may go to any zone), then the
per-host limit, then a STRICT association becomes WEAK. Each relaxation is a sentence in
``notes``; the cluster shows them. Resources are never relaxed: a node that does not fit even
without policies stays in ``unplaced`` and the cluster is refused with the scheduler's reason.

Relaxing is for a single-host deployment (a developer's box), where no spec that asks for
several hosts could run otherwise: with `relax=False` (what the cluster service asks for as soon
as the deployment has more than one host) the policies are honoured across the real hosts, and a
node that cannot be placed under them is unplaced with the scheduler's reason naming the policy
("instancePerHost 1 for group c/zk: 2 hosts hold members").

Pure: hosts and requests in, placement out; no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cellplane import scheduler
from cellplane.scheduler import HostSnapshot, PlacementRequest

__all__ = ["NodePlacement", "place_nodes"]


@dataclass(frozen=True)
class NodePlacement:
    hosts: Mapping[str, str]  # node name -> host id
    notes: tuple[str, ...]  # one sentence per policy that could not be honoured
    unplaced: tuple[scheduler.Unplaced, ...]  # nodes that fit nowhere even without policies


def _group_label(group: str | None) -> str:
    """`cluster/group` -> `group` for messages."""
    return (group or "").rsplit("/", 1)[-1]


def _relax_zones(r: PlacementRequest) -> PlacementRequest | None:
    return dataclasses.replace(r, zones=None) if r.zones is not None else None


def _relax_per_host(r: PlacementRequest) -> PlacementRequest | None:
    return dataclasses.replace(r, max_per_host=None) if r.max_per_host is not None else None


def _relax_strict(r: PlacementRequest) -> PlacementRequest | None:
    return dataclasses.replace(r, near_strict=False) if r.near and r.near_strict else None


def _note(kind: str, group: str, before: Sequence[PlacementRequest], hosts: int) -> str:
    first = before[0]
    if kind == "zones":
        zones = sorted({z for r in before for z in (r.zones or ())})
        return (
            f"node group {group}: groupRacks {zones} cannot be honoured (no ready host with room "
            f"in those zones); its nodes were placed in any zone"
        )
    if kind == "per_host":
        return (
            f"node group {group}: instancePerHost {first.max_per_host} cannot be honoured with "
            f"{hosts} ready host(s) for {len(before)} node(s); several share a host"
        )
    return (
        f"node group {group}: STRICT groupAssociation with {_group_label(first.near)} cannot be "
        f"honoured; placed as WEAK (on a host of that group where there is room)"
    )


_RELAXATIONS = (("zones", _relax_zones), ("per_host", _relax_per_host), ("strict", _relax_strict))


def place_nodes(
    hosts: Sequence[HostSnapshot], requests: Sequence[PlacementRequest], *, relax: bool = True
) -> NodePlacement:
    """Place every request, relaxing placement policies group by group where they cannot hold
    (only with `relax`; without, a node they leave no room for is unplaced)."""
    if not relax:
        plan = scheduler.place(hosts, requests, now=0.0)
        return NodePlacement(
            hosts={p.request_id: p.host_id for p in plan.placements},
            notes=(),
            unplaced=plan.unplaced,
        )
    current = list(requests)
    notes: list[str] = []
    ready = sum(1 for h in hosts if h.state == "READY")
    relaxed: set[tuple[str, str]] = set()
    while True:
        plan = scheduler.place(hosts, current, now=0.0)
        if not plan.unplaced:
            break
        stuck = {u.request_id for u in plan.unplaced}
        stuck_groups = {r.group for r in current if r.id in stuck and r.group is not None}
        progressed = False
        for kind, loosen in _RELAXATIONS:
            for group in sorted(g for g in stuck_groups if (kind, g) not in relaxed):
                members = [r for r in current if r.group == group]
                changed = [loosen(r) for r in members]
                if not any(c is not None for c in changed):
                    continue
                relaxed.add((kind, group))
                notes.append(_note(kind, _group_label(group), members, ready))
                replaced = {c.id: c for c in changed if c is not None}
                current = [replaced.get(r.id, r) for r in current]
                progressed = True
            if progressed:
                break  # retry with this level relaxed before giving up more
        if not progressed:
            break
    return NodePlacement(
        hosts={p.request_id: p.host_id for p in plan.placements},
        notes=tuple(notes),
        unplaced=plan.unplaced,
    )
