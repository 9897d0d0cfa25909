"""A cell's networks: which of its project's networks it joins, and its address on each.

A cell joins one or more networks of its project (`CellCreate.network` for one, `networks` for
several, the first one first). Each is a `CellNetwork` row with the control plane's address there
(allocated by `state.networks` when the row is flushed); position 0 is the first network, which
`cells.network_id` / `network_address` also name. Called by `services.cells` (create, the
cell's answer), `services.hosts` (assignments) and the Docker endpoint (`network connect` /
`disconnect`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, ValidationFailed
from cellplane.services.schemas import MAX_NETWORKS, CellCreate
from cellplane.state import networks as state_networks
from cellplane.state.models import Cell, CellNetwork, Network

__all__ = [
    "attach",
    "attachments",
    "connect",
    "count",
    "disconnect",
    "listing",
    "lookup",
    "observed",
    "resolve",
    "users",
]


_CHUNK = 900


def lookup(s: Session, project_id: str, name: str, field: str = "network") -> str:
    """The id of the project's network `name` ("default": its default one); 422 if none."""
    if name == state_networks.DEFAULT_NETWORK:
        return state_networks.default_network_id(project_id)
    found = s.scalar(
        select(Network.id).where(Network.project_id == project_id, Network.name == name)
    )
    if found is None or found == state_networks.default_network_id(project_id):
        raise ValidationFailed.field(
            field, f"network {name!r} does not exist (`cellplane network ls`)"
        )
    return str(found)


def resolve(s: Session, project_id: str, body: CellCreate) -> list[str]:
    """The ids of the networks a new cell joins, its first one first."""
    if body.networks is not None:
        return [lookup(s, project_id, n, "networks") for n in body.networks]
    return [lookup(s, project_id, body.network or state_networks.DEFAULT_NETWORK)]


def attach(s: Session, cell: Cell, network_ids: list[str]) -> None:
    """A new cell on `network_ids`: the first is its `network_id` (its row of position 0 is made
    with its address when the cell is flushed), the others rows of their own."""
    cell.network_id = network_ids[0]
    for position, nid in enumerate(network_ids[1:], start=1):
        s.add(CellNetwork(cell_id=cell.id, network_id=nid, position=position))


def attachments(s: Session, cell_ids: Iterable[str]) -> dict[str, list[tuple[Network, str | None]]]:
    """Each cell's networks with its address there, its first network first."""
    wanted = sorted(set(cell_ids))
    out: dict[str, list[tuple[Network, str | None]]] = {}
    # In chunks: a host's full view may name more cells than a statement may have parameters.
    for start in range(0, len(wanted), _CHUNK):
        rows = s.execute(
            select(CellNetwork.cell_id, CellNetwork.address, Network)
            .join(Network, Network.id == CellNetwork.network_id)
            .where(CellNetwork.cell_id.in_(wanted[start : start + _CHUNK]))
            .order_by(CellNetwork.cell_id, CellNetwork.position)
        )
        for cell_id, address, net in rows:
            out.setdefault(str(cell_id), []).append((net, address))
    return out


def listing(s: Session, cell_id: str) -> list[dict[str, Any]]:
    """The cell's answer's `networks`: [{name, address}], its first network first; the address
    its engine reports there, else the control plane's."""
    return listings(s, [cell_id]).get(cell_id, [])


def listings(s: Session, cell_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """`listing` of many cells in one query (a page of cells), by cell id."""
    found: dict[str, list[dict[str, Any]]] = {}
    rows = s.execute(
        select(CellNetwork.cell_id, CellNetwork.address, CellNetwork.engine_address, Network)
        .join(Network, Network.id == CellNetwork.network_id)
        .where(CellNetwork.cell_id.in_(sorted(set(cell_ids))))
        .order_by(CellNetwork.cell_id, CellNetwork.position)
    )
    for cell_id, address, engine, net in rows:
        found.setdefault(cell_id, []).append(
            {"name": state_networks.display_name(net), "address": engine or address}
        )
    return found


def observed(s: Session, cell: Cell, addresses: dict[str, str]) -> None:
    """Record the addresses the cell's engine reports, by the engine's network name."""
    rows = s.execute(
        select(CellNetwork, Network)
        .join(Network, Network.id == CellNetwork.network_id)
        .where(CellNetwork.cell_id == cell.id)
    )
    for row, net in rows:
        found = addresses.get(state_networks.engine_name(net))
        if found and row.engine_address != found:
            row.engine_address = found[:45]


def _rows(s: Session, cell: Cell) -> list[CellNetwork]:
    return list(
        s.scalars(
            select(CellNetwork).where(CellNetwork.cell_id == cell.id).order_by(CellNetwork.position)
        )
    )


Row = tuple[str, str | None, str | None]  # network id, address, engine address


def _rewrite(s: Session, cell: Cell, have: list[CellNetwork], rows: list[Row]) -> None:
    """The cell's networks as `rows`, first first; the old columns too."""
    for a in have:
        s.delete(a)
    s.flush()
    for position, (nid, address, engine) in enumerate(rows):
        s.add(
            CellNetwork(
                cell_id=cell.id,
                network_id=nid,
                address=address,
                engine_address=engine,
                position=position,
            )
        )
    cell.network_id, cell.network_address = rows[0][0], rows[0][1]
    s.flush()


def connect(
    s: Session,
    cell: Cell,
    network_id: str,
    address: str | None = None,
    position: int | None = None,
) -> CellNetwork:
    """Add a network to an existing cell, last (or at `position`, with `address`: to undo a
    disconnect); its address is allocated at flush when not given. 409 if it is on it already
    or on as many networks as a cell may be."""
    have = _rows(s, cell)
    if any(a.network_id == network_id for a in have):
        raise Conflict(f"cell {cell.name!r} is on that network already")
    if len(have) >= MAX_NETWORKS:
        raise Conflict(f"cell {cell.name!r} is on {len(have)} networks, the most a cell may join")
    if position is None or position >= len(have):
        row = CellNetwork(
            cell_id=cell.id,
            network_id=network_id,
            address=address,
            position=max((a.position for a in have), default=-1) + 1,
        )
        s.add(row)
        s.flush()
        return row
    rows = [(a.network_id, a.address, a.engine_address) for a in have]
    rows.insert(position, (network_id, address, None))
    _rewrite(s, cell, have, rows)
    found = s.get(CellNetwork, (cell.id, network_id))
    assert found is not None
    return found


def disconnect(s: Session, cell: Cell, network_id: str) -> None:
    """Take a network from a cell; its first network passes to the next one. 409 if the cell is
    not on it or it is the cell's only network."""
    have = _rows(s, cell)
    gone = [a for a in have if a.network_id == network_id]
    if not gone:
        raise Conflict(f"cell {cell.name!r} is not on that network")
    if len(have) == 1:
        raise Conflict(f"network is cell {cell.name!r}'s only one: a cell keeps at least one")
    rest = [(a.network_id, a.address, a.engine_address) for a in have if a.network_id != network_id]
    _rewrite(s, cell, have, rest)


def users(s: Session, network_id: str, limit: int | None = None) -> list[str]:
    """Names of the cells on the network (any position), sorted."""
    q = (
        select(Cell.name)
        .join(CellNetwork, CellNetwork.cell_id == Cell.id)
        .where(CellNetwork.network_id == network_id)
        .order_by(Cell.name)
    )
    return list(s.scalars(q.limit(limit) if limit else q))


def count(s: Session, network_id: str) -> int:
    """How many cells are on the network."""
    q = select(func.count()).where(CellNetwork.network_id == network_id)
    return int(s.scalar(q) or 0)
