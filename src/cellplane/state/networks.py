"""Project networks in the state: the default network of each project, and subnet allocation.

Every project has a default network, made in the same transaction as the project by a
`before_flush` hook (wherever the project is created: bootstrap, a new tenant, `POST
/v1/projects`), and every new cell without a network joins its project's default one. Migration
0008 did the same for the rows that existed before networks were a resource (one /24 each).

**Sizing.** A network's subnet holds the cells its project may run: `prefix_for_cells` of the
project's cell quota (the smaller of its own and its tenant's), never smaller than a /24 (253
cells) nor larger than a /16; a project without a cell quota gets a /20 (4,093 cells). When a
quota changes, `fit_networks` moves a network that no cell uses to a subnet of the new size
(larger, or smaller to give the pool back); one that cells use keeps its subnet (their addresses
are in it), and a cell beyond it fails with the engine's IPAM error on the cell, never a silent
wait.

**Allocation** is deterministic: the lowest block of the wanted size in `SUBNET_POOL` that
overlaps no other network's subnet (the blocks are aligned, so /24s and /20s mix without
collisions); when no block of that size is left, the next smaller size is tried, down to /24.
The unique constraint on `networks.subnet` makes a race between two writers fail rather than
collide; on PostgreSQL, where a transaction takes no write lock up front, an advisory lock makes
concurrent allocations wait for each other instead. Ids come from the project's id
(`net-<project id>`): no clock, no randomness here.

**The overlay.** Each network gets a VXLAN id (`vni`, the lowest free from `VNI_BASE`) when it is
made, and each cell an address on its network when it is made (`network_address`: the address
after as many as the network holds when that one is free, which for a network without holes is
the lowest free; else the lowest free host address of the subnet after the gateway). Both are
the control plane's, so a network spanning hosts never hands one address out twice (the
engines' own IPAM is per host: see RUNTIME.md's ipam.db pitfall); unique constraints make a
racing writer fail, not collide.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import Select, bindparam, event, func, select, text
from sqlalchemy.orm import Session

from cellplane.state.identity_models import Quota
from cellplane.state.models import Cell, CellNetwork, Network, Project

__all__ = [
    "BASE_PREFIX",
    "DEFAULT_DRIVER",
    "DEFAULT_NETWORK",
    "LARGEST_PREFIX",
    "SUBNET_POOL",
    "UNLIMITED_PREFIX",
    "VNI_BASE",
    "VNI_MAX",
    "capacity",
    "cell_limit",
    "default_network_id",
    "default_network_name",
    "display_name",
    "engine_name",
    "engine_name_of",
    "fit_networks",
    "free_address",
    "free_addresses",
    "free_subnet",
    "free_vni",
    "is_default",
    "lock_addresses",
    "lowest_free_subnet",
    "next_addresses",
    "prefix_for_cells",
]

# 32,768 /24s (or 2,048 /20s), away from podman's default 10.88/10.89 pools.
SUBNET_POOL: Final = ipaddress.ip_network("10.128.0.0/9")
BASE_PREFIX: Final = 24  # the smallest network: 253 cells
LARGEST_PREFIX: Final = 16  # the largest: 65,533 cells
UNLIMITED_PREFIX: Final = 20  # a project without a cell quota: 4,093 cells
DEFAULT_DRIVER: Final = "bridge"
VNI_BASE: Final = 4096  # below it: ids a site may already use for its own VLAN-like segments
VNI_MAX: Final = (1 << 24) - 1
#: What users call a project's default network (its row's name is the engine's, see below).
DEFAULT_NETWORK: Final = "default"


def default_network_id(project_id: str) -> str:
    return "net-" + project_id.removeprefix("prj-")


def default_network_name(project_id: str) -> str:
    """The engine-side name of a project's default network, as it has always been."""
    return f"cp-{project_id}"


def is_default(net: Network) -> bool:
    return net.id == default_network_id(net.project_id)


def engine_name(net: Network) -> str:
    """The engine's name of the network on every host: the default network's row name (as before
    networks were a resource), `cp-<network id>` for the others (unique across projects)."""
    return engine_name_of(net.id, net.name, net.project_id)


def engine_name_of(net_id: str, name: str, project_id: str) -> str:
    """`engine_name` of a network read as columns (the agents' assignments)."""
    return name if net_id == default_network_id(project_id) else f"cp-{net_id}"


def display_name(net: Network) -> str:
    """What users call it: "default" for the project's default network, else its name."""
    return DEFAULT_NETWORK if is_default(net) else net.name


def capacity(prefix: int) -> int:
    """How many containers a subnet of this prefix holds (network, broadcast, gateway taken)."""
    return (1 << (32 - prefix)) - 3


def prefix_for_cells(cells: int | None) -> int:
    """The prefix of a subnet that holds `cells` containers (None: no limit), /24 to /16."""
    if cells is None:
        return UNLIMITED_PREFIX
    prefix = BASE_PREFIX
    while prefix > LARGEST_PREFIX and capacity(prefix) < cells:
        prefix -= 1
    return prefix


def free_subnet(taken: Iterable[str], prefix: int) -> str | None:
    """The lowest `prefix` block of the pool overlapping none of `taken`; None if none is left."""
    size = 1 << (32 - prefix)
    start = int(SUBNET_POOL.network_address)
    end = start + SUBNET_POOL.num_addresses
    used = sorted(
        (int(n.network_address), int(n.broadcast_address))
        for n in (ipaddress.ip_network(t) for t in taken)
        if n.version == 4
    )
    candidate = start
    for low, high in used:
        if high < candidate:
            continue
        if low >= candidate + size:
            break
        candidate = (high // size + 1) * size  # past this one, aligned
    if candidate + size > end:
        return None
    return f"{ipaddress.ip_address(candidate)}/{prefix}"


def lowest_free_subnet(taken: Iterable[str], prefix: int = BASE_PREFIX) -> str:
    """`free_subnet` of `prefix`, else of the next smaller sizes down to /24; raise if none."""
    used = list(taken)
    for p in range(prefix, BASE_PREFIX + 1):
        subnet = free_subnet(used, p)
        if subnet is not None:
            return subnet
    raise ValueError(f"the network pool {SUBNET_POOL} is exhausted")


def free_vni(taken: Iterable[int | None]) -> int:
    """The lowest VXLAN id from VNI_BASE that none of `taken` uses."""
    used = {v for v in taken if v is not None}
    vni = VNI_BASE
    while vni in used:
        vni += 1
    if vni > VNI_MAX:
        raise ValueError("no VXLAN id is left")
    return vni


def _address_int(address: str) -> int:
    """The integer of an address: dotted IPv4 split by hand (a quarter of `ipaddress`'s cost; a
    network's allocation reads every address on it), anything else through `ipaddress`."""
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        a, b, c, d = (int(p) for p in parts)
        if max(a, b, c, d) <= 255:
            return (a << 24) | (b << 16) | (c << 8) | d
    return int(ipaddress.ip_address(address))


def _address_text(version: int, value: int) -> str:
    if version == 4:
        return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
    return str(ipaddress.ip_address(value))


def free_address(subnet: str, taken: Iterable[str | None]) -> str:
    """The lowest host address of `subnet` after its gateway (the first) that `taken` lacks."""
    found = free_addresses(subnet, taken, 1)
    if not found:
        net = ipaddress.ip_network(subnet)
        raise ValueError(f"no free address is left in {subnet} ({capacity(net.prefixlen)} cells)")
    return found[0]


def free_addresses(subnet: str, taken: Iterable[str | None], n: int, skip: int = 0) -> list[str]:
    """The `n` lowest free host addresses of `subnet` (as `free_address`, in one pass; fewer
    when the subnet runs out), after its first `skip` host addresses."""
    net = ipaddress.ip_network(subnet)
    used = {_address_int(a) for a in taken if a}
    first = int(net.network_address) + 2 + skip  # the network address, then the gateway
    last = int(net.broadcast_address) - 1
    out: list[str] = []
    for k in range(first, last + 1):
        if len(out) == n:
            break
        if k not in used:
            out.append(_address_text(net.version, k))
    return out


def next_addresses(subnet: str, stored: int, pending: Iterable[str | None], n: int) -> list[str]:
    """The `n` addresses right after the first `stored` host addresses of `subnet` (skipping
    `pending`), or [] when they would run past its end: a network allocated from the bottom,
    without holes, has exactly those free next (`_addresses` checks it)."""
    found = free_addresses(subnet, pending, n, skip=stored)
    return found if len(found) == n else []


def lock_addresses(session: Session, network_ids: Iterable[str]) -> None:
    """On PostgreSQL, one address allocation per network at a time until the transaction ends
    (see `_addresses`); nothing on SQLite, whose writers are serialised."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for nid in sorted(set(network_ids)):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key, hashtext(:nid))"),
            {"key": _ADDRESS_LOCK, "nid": nid},
        )


def _limit(q: Quota | None) -> int | None:
    return None if q is None else q.cells


def cell_limit(s: Session, project_id: str, tenant_id: str) -> int | None:
    """The most cells the project may hold: its own cell quota and its tenant's, the smaller."""
    rows = s.scalars(
        select(Quota).where(
            Quota.tenant_id == tenant_id,
            (Quota.project_id == project_id) | Quota.project_id.is_(None),
        )
    )
    limits = [v for v in (_limit(q) for q in rows) if v is not None]
    return min(limits) if limits else None


def fit_networks(s: Session, projects: Iterable[Project]) -> list[Network]:
    """Move the projects' networks that no cell uses to a subnet of the size their quota wants.

    Called when a quota changes (in that transaction). A network that cells use is left as it
    is. Returns the networks that moved.
    """
    moved: list[Network] = []
    for p in projects:
        want = prefix_for_cells(cell_limit(s, p.id, p.tenant_id))
        for net in s.scalars(select(Network).where(Network.project_id == p.id)):
            if ipaddress.ip_network(net.subnet).prefixlen == want:
                continue
            used = select(CellNetwork.cell_id).where(CellNetwork.network_id == net.id).limit(1)
            if s.scalar(used) is not None:
                continue  # its cells have addresses in it
            taken = [t for t in s.scalars(select(Network.subnet)) if t != net.subnet]
            subnet = lowest_free_subnet(taken, want)
            if subnet != net.subnet:
                net.subnet = subnet
                moved.append(net)
    return moved


_SUBNET_LOCK = 0x43505355424E4554 & 0x7FFFFFFFFFFFFFFF  # "CPSUBNET": this hook's advisory lock
_ADDRESS_LOCK = 0x4350414E  # "CPAN": with the network id's hash, a network's address lock


@event.listens_for(Session, "before_flush")
def _default_networks(session: Session, _ctx: Any, _instances: Any) -> None:
    projects = [o for o in session.new if isinstance(o, Project)]
    new_cells = [o for o in session.new if isinstance(o, Cell)]
    cells = [c for c in new_cells if c.network_id is None]
    new_nets = any(isinstance(o, Network) for o in session.new)
    attaching = any(isinstance(o, CellNetwork) for o in session.new)
    if not projects and not new_cells and not new_nets and not attaching:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and (projects or new_nets):
        # Concurrent creations each read the free subnets (and VXLAN ids), then insert: on
        # PostgreSQL (no write lock up front, unlike SQLite's BEGIN IMMEDIATE) two would pick
        # the same one and the unique constraint refuse the second as a conflict. One
        # allocation at a time, until the transaction ends.
        with session.no_autoflush:
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SUBNET_LOCK})
    if projects:
        with session.no_autoflush:
            taken = set(session.scalars(select(Network.subnet)))
            # A new project has no quota of its own yet: its tenant's cell quota bounds it.
            tenant_cells = {
                q.tenant_id: q.cells
                for q in session.scalars(select(Quota).where(Quota.project_id.is_(None)))
            }
        taken |= {o.subnet for o in session.new if isinstance(o, Network)}
        for p in projects:
            subnet = lowest_free_subnet(taken, prefix_for_cells(tenant_cells.get(p.tenant_id)))
            taken.add(subnet)
            session.add(
                Network(
                    id=default_network_id(p.id),
                    project_id=p.id,
                    name=default_network_name(p.id),
                    subnet=subnet,
                    driver=DEFAULT_DRIVER,
                    created_at=p.created_at,
                )
            )
    for c in cells:
        c.network_id = default_network_id(c.project_id)
    _vnis(session)
    _addresses(session, [c for c in new_cells if c.network_address is None], postgres)
    _mirror_first(session, new_cells)


def _vnis(session: Session) -> None:
    nets = [o for o in session.new if isinstance(o, Network) and o.vni is None]
    if not nets:
        return
    with session.no_autoflush:
        taken = set(session.scalars(select(Network.vni).where(Network.vni.is_not(None))))
    taken |= {o.vni for o in session.new if isinstance(o, Network) and o.vni is not None}
    for net in nets:
        net.vni = free_vni(taken)
        taken.add(net.vni)


def _pending(session: Session, nid: str) -> set[str | None]:
    """The addresses on network `nid` about to be stored (this flush's new rows)."""
    taken: set[str | None] = set()
    for o in session.new:
        if isinstance(o, Cell) and o.network_id == nid:
            taken.add(o.network_address)
        elif isinstance(o, CellNetwork) and o.network_id == nid:
            taken.add(o.address)
    return taken


def _taken(session: Session, nid: str) -> set[str | None]:
    """The addresses on network `nid`: stored and about to be, first networks and further ones."""
    taken: set[str | None] = set(
        session.scalars(select(Cell.network_address).where(Cell.network_id == nid))
    )
    taken |= set(session.scalars(select(CellNetwork.address).where(CellNetwork.network_id == nid)))
    return taken | _pending(session, nid)


_FAST_MOST: Final = 64  # a larger batch reads the network's addresses once (`_taken`)


def _next_free(session: Session, nid: str, subnet: str, n: int) -> list[str]:
    """`n` free addresses of network `nid` without reading all of them: the ones right after as
    many addresses as the network has rows (`next_addresses`), if none of them is taken (two
    indexed lookups). [] when one is (a hole below, left by a removed cell) or for a large `n`;
    then the caller reads them all."""
    if n > _FAST_MOST:
        return []
    count, attached, first = _next_free_statements()
    stored = session.scalar(count, {"nid": nid})
    found = next_addresses(subnet, int(stored or 0), _pending(session, nid), n)
    if not found:
        return []
    given = {"nid": nid, "found": found}
    clash = session.scalar(attached, given) or session.scalar(first, given)
    return [] if clash else found


@functools.cache
def _next_free_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """`_next_free`'s queries, built once (each cell creation runs them)."""
    nid: Any = bindparam("nid")
    found: Any = bindparam("found", expanding=True)
    count = select(func.count()).select_from(CellNetwork).where(CellNetwork.network_id == nid)
    attached = (
        select(CellNetwork.address)
        .where(CellNetwork.network_id == nid, CellNetwork.address.in_(found))
        .limit(1)
    )
    first = (
        select(Cell.network_address)
        .where(Cell.network_id == nid, Cell.network_address.in_(found))
        .limit(1)
    )
    return count, attached, first


def _addresses(session: Session, cells: list[Cell], postgres: bool) -> None:
    """Addresses for new cells on their first network (mirrored as their `CellNetwork` of
    position 0) and for new further attachments (`CellNetwork` rows without an address)."""
    attachments = [o for o in session.new if isinstance(o, CellNetwork) and o.address is None]
    if not cells and not attachments:
        return
    pending = {o.id: o for o in session.new if isinstance(o, Network)}
    taken: dict[str, set[str | None]] = {}
    subnets: dict[str, str] = {}
    ahead: dict[str, list[str]] = {}  # found without reading the whole network, still to give
    wanted = Counter([str(c.network_id) for c in cells] + [a.network_id for a in attachments])
    with session.no_autoflush:
        if postgres:
            # Concurrent cell creations on one network would draw the same lowest free address
            # (see the subnet lock above): one allocation per network at a time, networks
            # locked in one order so that two batches never wait for each other in a circle.
            lock_addresses(
                session, {str(c.network_id) for c in cells} | {a.network_id for a in attachments}
            )

        def allocate(nid: str) -> str | None:
            if nid not in subnets:
                net = pending.get(nid) or session.get(Network, nid)
                if net is None:
                    return None  # the foreign key refuses it at insert
                subnets[nid] = net.subnet
                ahead[nid] = _next_free(session, nid, net.subnet, wanted[nid])
            if ahead[nid]:
                return ahead[nid].pop(0)
            if nid not in taken:
                taken[nid] = _taken(session, nid)
            try:
                address = free_address(subnets[nid], taken[nid])
            except ValueError:
                return None  # full: the engine's IPAM error lands on the cell, as before
            taken[nid].add(address)
            return address

        for c in cells:
            c.network_address = allocate(str(c.network_id))
        for a in attachments:
            a.address = allocate(a.network_id)


def _mirror_first(session: Session, cells: list[Cell]) -> None:
    """A new cell's first network as its `CellNetwork` of position 0 (unless given)."""
    firsts = {o.cell_id for o in session.new if isinstance(o, CellNetwork) and o.position == 0}
    for c in cells:
        if c.network_id is not None and c.id not in firsts:
            session.add(
                CellNetwork(
                    cell_id=c.id, network_id=c.network_id, address=c.network_address, position=0
                )
            )
