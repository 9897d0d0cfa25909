"""Test kit for the scheduler: terse builders and an independent plan checker.

Used by the scheduler's own tests and by any caller's tests (controller, cluster planner)
that want to build snapshots quickly or check that a plan they got back is sound.
`assert_plan_valid` re-derives every constraint from the snapshot on its own, sharing only
`millicores` (the unit capacity is accounted in) with the engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .model import (
    READY,
    SPREAD,
    Affinity,
    HostSnapshot,
    PlacementRequest,
    Plan,
    Resources,
    millicores,
)

__all__ = ["assert_plan_valid", "fits", "host", "replay", "request", "requests"]


def host(
    id: str,
    cpu: float = 8.0,
    memory_mb: int = 16384,
    disk_gb: int = 100,
    *,
    used: tuple[float, int, int] = (0.0, 0, 0),
    state: str = READY,
    labels: Mapping[str, str] | None = None,
    zone: str | None = None,
    ports: Iterable[tuple[str, int]] = (),
    groups: Mapping[str, int] | None = None,
    cells: Iterable[Mapping[str, str]] = (),
    isolation: Iterable[str] = ("standard",),
) -> HostSnapshot:
    """A host snapshot; `used` is (cpu, memory_mb, disk_gb) already in use."""
    return HostSnapshot(
        id=id,
        state=state,
        capacity=Resources(cpu, memory_mb, disk_gb),
        used=Resources(*used),
        labels=dict(labels or {}),
        zone=zone,
        used_ports=frozenset(ports),
        groups=dict(groups or {}),
        cells=tuple(dict(c) for c in cells),
        isolation=frozenset(isolation),
    )


def request(
    id: str,
    cpu: float = 1.0,
    memory_mb: int = 1024,
    disk_gb: int = 10,
    *,
    labels: Mapping[str, str] | None = None,
    ports: Iterable[tuple[str, int]] = (),
    group: str | None = None,
    max_per_host: int | None = None,
    zones: Iterable[str] | None = None,
    near: str | None = None,
    near_strict: bool = False,
    policy: str = SPREAD,
    cell_labels: Mapping[str, str] | None = None,
    affinity: Iterable[Affinity] = (),
    isolation: str = "standard",
) -> PlacementRequest:
    return PlacementRequest(
        id=id,
        resources=Resources(cpu, memory_mb, disk_gb),
        labels=dict(labels or {}),
        ports=frozenset(ports),
        group=group,
        max_per_host=max_per_host,
        zones=frozenset(zones) if zones is not None else None,
        near=near,
        near_strict=near_strict,
        policy=policy,
        cell_labels=dict(cell_labels or {}),
        affinity=tuple(affinity),
        isolation=isolation,
    )


def requests(prefix: str, count: int, **kwargs: object) -> list[PlacementRequest]:
    """`count` identical requests "<prefix>-0".. sharing their field objects, like a node group."""
    first = request(f"{prefix}-0", **kwargs)  # type: ignore[arg-type]
    out = [first]
    for i in range(1, count):
        out.append(
            PlacementRequest(
                id=f"{prefix}-{i}",
                resources=first.resources,
                labels=first.labels,
                ports=first.ports,
                group=first.group,
                max_per_host=first.max_per_host,
                zones=first.zones,
                near=first.near,
                near_strict=first.near_strict,
                policy=first.policy,
                cell_labels=first.cell_labels,
                affinity=first.affinity,
                isolation=first.isolation,
            )
        )
    return out


@dataclass
class _Host:
    snap: HostSnapshot
    cpu: int
    memory: int
    disk: int
    ports: set[tuple[str, int]] = field(default_factory=set)
    groups: dict[str, int] = field(default_factory=dict)
    cells: list[Mapping[str, str]] = field(default_factory=list)


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def fits(h: _Host, r: PlacementRequest, anywhere: Sequence[_Host] = ()) -> str | None:
    """The first constraint `r` breaks on host `h` (in replay state), or None.

    `anywhere` (every host, in replay state) decides whether a hard affinity is waived: no cell
    anywhere matches it and the request itself does.
    """
    s = h.snap
    if s.state != READY:
        return f"host {s.id} is {s.state}"
    if r.isolation not in s.isolation:
        return f"host {s.id} does not offer isolation class {r.isolation}"
    for k, v in r.labels.items():
        if s.labels.get(k) != v:
            return f"host {s.id} lacks label {k}={v}"
    if r.zones is not None and s.zone not in r.zones:
        return f"host {s.id} zone {s.zone} not in {sorted(r.zones)}"
    if r.near is not None and r.near_strict and h.groups.get(r.near, 0) <= 0:
        return f"host {s.id} holds no member of {r.near}"
    if h.cpu + millicores(r.resources.cpu) > millicores(s.capacity.cpu):
        return f"host {s.id} cpu over-committed"
    if h.memory + r.resources.memory_mb > s.capacity.memory_mb:
        return f"host {s.id} memory over-committed"
    if h.disk + r.resources.disk_gb > s.capacity.disk_gb:
        return f"host {s.id} disk over-committed"
    for a in r.affinity:
        if a.soft:
            continue
        here = sum(1 for c in h.cells if _matches(a.selector, c))
        if a.anti and here:
            return f"host {s.id} runs a cell matching {dict(a.selector)} (anti-affinity)"
        if not a.anti and not here:
            first = _matches(a.selector, r.cell_labels) and not any(
                _matches(a.selector, c) for o in anywhere for c in o.cells
            )
            if not first:
                return f"host {s.id} runs no cell matching {dict(a.selector)} (affinity)"
    clash = h.ports & r.ports
    if clash:
        return f"host {s.id} already publishes {sorted(clash)}"
    if (
        r.max_per_host is not None
        and r.group is not None
        and h.groups.get(r.group, 0) + 1 > r.max_per_host
    ):
        return f"host {s.id} exceeds instancePerHost {r.max_per_host} for {r.group}"
    return None


def replay(
    hosts: Sequence[HostSnapshot], requests: Sequence[PlacementRequest], plan: Plan
) -> list[str]:
    """Every problem found replaying `plan` in request order; empty when the plan is sound.

    Checks: every request is answered exactly once, placements keep request order, each
    placement breaks no constraint given the placements before it, and each unplaced
    request has a reason and really fits on no host at that point.
    """
    problems: list[str] = []
    state = {
        h.id: _Host(
            h,
            millicores(h.used.cpu),
            h.used.memory_mb,
            h.used.disk_gb,
            set(h.used_ports),
            dict(h.groups),
            list(h.cells),
        )
        for h in hosts
    }
    every = list(state.values())
    placed = {p.request_id: p.host_id for p in plan.placements}
    missing = {u.request_id: u.reason for u in plan.unplaced}
    ids = [r.id for r in requests]
    if len(set(ids)) != len(ids):
        problems.append("request ids are not unique; the checker needs unique ids")
        return problems
    answered = len(plan.placements) + len(plan.unplaced)
    if answered != len(ids) or set(placed) | set(missing) != set(ids):
        problems.append("plan does not answer every request exactly once")
        return problems
    order = [r.id for r in requests if r.id in placed]
    if [p.request_id for p in plan.placements] != order:
        problems.append("placements are not in request order")
    for r in requests:
        if r.id in placed:
            h = state.get(placed[r.id])
            if h is None:
                problems.append(f"{r.id}: unknown host {placed[r.id]}")
                continue
            broken = fits(h, r, every)
            if broken:
                problems.append(f"{r.id}: {broken}")
            h.cpu += millicores(r.resources.cpu)
            h.memory += r.resources.memory_mb
            h.disk += r.resources.disk_gb
            h.ports |= r.ports
            if r.group is not None:
                h.groups[r.group] = h.groups.get(r.group, 0) + 1
            h.cells.append(r.cell_labels)
        else:
            if not missing[r.id]:
                problems.append(f"{r.id}: unplaced without a reason")
            usable = [h.snap.id for h in every if fits(h, r, every) is None]
            if usable:
                problems.append(f"{r.id}: unplaced but fits on {usable[:3]}")
    return problems


def assert_plan_valid(
    hosts: Sequence[HostSnapshot], requests: Sequence[PlacementRequest], plan: Plan
) -> None:
    """Raise AssertionError listing every problem `replay` finds in `plan`."""
    problems = replay(hosts, requests, plan)
    assert not problems, "invalid plan:\n  " + "\n  ".join(problems[:20])
