"""Start order, pure: which roles wait for which, role waves, node-group waves, named cycles.

Used by :func:`cellplane.clusters.planner.plan_cluster`. A role waits for every role named in
its ``waits_for`` (a name matches a role of that name or one that ``provides`` it). Roles are
layered into role waves; node groups are layered into waves so that a group starts after every
other group hosting a role it waits for. Cycles are refused and named, between roles or else
between node groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from cellplane.clusters.catalog import Catalog
from cellplane.clusters.errors import DependencyCycleError, PlanError
from cellplane.clusters.spec_model import NodeGroupSpec

__all__ = ["group_start_waves", "role_dependencies", "start_order"]


def role_dependencies(roles: Iterable[str], catalog: Catalog) -> dict[str, frozenset[str]]:
    """For each of `roles`, the roles among them it waits for.

    Raises PlanError when a role waits for something no role in `roles` provides.
    """
    present = list(dict.fromkeys(roles))
    provided: dict[str, set[str]] = {}
    for role in present:
        provided.setdefault(role, set()).add(role)
        definition = catalog.roles.get(role)
        for service in definition.provides if definition else ():
            provided.setdefault(service, set()).add(role)
    deps: dict[str, frozenset[str]] = {}
    for role in present:
        definition = catalog.roles.get(role)
        wanted: set[str] = set()
        for service in definition.waits_for if definition else ():
            providers = provided.get(service, set()) - {role}
            if not providers:
                raise PlanError(
                    f"role {role} waits for {service}, which no node group of this cluster provides"
                )
            wanted |= providers
        deps[role] = frozenset(wanted)
    return deps


def _find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    stack: list[str] = []

    def visit(role: str) -> list[str] | None:
        colour[role] = grey
        stack.append(role)
        for dep in sorted(deps.get(role, ())):
            if colour.get(dep, black) == grey:
                return [*stack[stack.index(dep) :], dep]
            if colour.get(dep) == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        colour[role] = black
        return None

    for role in sorted(deps):
        if colour[role] == white:
            found = visit(role)
            if found:
                return found
    return None


def start_order(deps: Mapping[str, Iterable[str]], *, kind: str = "role") -> list[list[str]]:
    """Layer names (roles or node groups) into waves, each after all it depends on.

    Names within a wave are sorted. Raises DependencyCycleError naming the
    cycle (e.g. ``a -> b -> a``); `kind` says what the names are in that message.
    """
    cycle = _find_cycle(deps)
    if cycle is not None:
        raise DependencyCycleError(cycle, kind)
    level: dict[str, int] = {}

    def depth(role: str) -> int:
        if role not in level:
            level[role] = 1 + max((depth(d) for d in deps.get(role, ()) if d in deps), default=-1)
        return level[role]

    for role in deps:
        depth(role)
    waves: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for role in sorted(level):
        waves[level[role]].append(role)
    return waves


def group_start_waves(
    live: list[NodeGroupSpec], deps: Mapping[str, frozenset[str]]
) -> list[list[str]]:
    """Layer node groups: a group starts after every *other* group hosting a role it waits for.

    Kahn's algorithm over roles rather than group pairs, so thousands of groups stay linear:
    a group is ready once, for each role it waits for, every other group hosting that role
    is placed. Raises DependencyCycleError naming a cycle between groups.
    """
    hosts: dict[str, set[str]] = {}
    for g in live:
        for role in g.roles:
            hosts.setdefault(role, set()).add(g.name)
    awaited: dict[str, set[str]] = {
        g.name: {d for r in g.roles for d in deps[r] if hosts.get(d, set()) - {g.name}}
        for g in live
    }
    waiters: dict[str, list[str]] = {}
    for name, roles in awaited.items():
        for role in roles:
            waiters.setdefault(role, []).append(name)
    pending_hosts = {role: set(names) for role, names in hosts.items()}
    roles_of = {g.name: g.roles for g in live}
    unmet = {name: len(roles) for name, roles in awaited.items()}
    satisfied: set[tuple[str, str]] = set()

    def satisfy(group: str, role: str, ready: list[str]) -> None:
        if (group, role) in satisfied:
            return
        satisfied.add((group, role))
        unmet[group] -= 1
        if unmet[group] == 0:
            ready.append(group)

    waves: list[list[str]] = []
    current = sorted(name for name, n in unmet.items() if n == 0)
    placed = 0
    while current:
        waves.append(current)
        placed += len(current)
        nxt: list[str] = []
        for group in current:
            for role in roles_of[group]:
                left = pending_hosts.get(role)
                if left is None or group not in left:
                    continue
                left.discard(group)
                for waiter in waiters.get(role, ()) if len(left) <= 1 else ():
                    # Satisfied when nothing is left, or only the waiter itself (a role inside
                    # its own node starts in role-wave order, not after its own group).
                    if not left or left == {waiter}:
                        satisfy(waiter, role, nxt)
        current = sorted(set(nxt))
    if placed < len(live):
        rest = {g.name for g in live} - {n for w in waves for n in w}
        edges = {
            name: {h for role in awaited[name] for h in hosts[role] if h != name and h in rest}
            for name in rest
        }
        cycle = _find_cycle(edges)
        raise DependencyCycleError(cycle or sorted(rest), "node group")
    return waves
