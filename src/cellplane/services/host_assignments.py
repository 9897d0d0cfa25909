"""An agent's assignments answer, read and built as the JSON the agent gets (`agent/v1`).

Every long poll of every agent ends in one of these (`GET /v1/agent/hosts/{id}/assignments`), so
at many hosts it is among the server's largest items (docs/scale.md, part 5). The answer is read
in four statements of columns (no ORM objects): the host's revisions, its volumes, its cells
with their image and first network (joined), and the further networks of those cells (joined
through the cells, not a list of ids). It is built as plain dicts equal to
`wire.Assignments(...).model_dump(mode="json")` of the same rows: the typed contract stays
`cellplane.wire.agent` (`hosts.assignments` returns it, validated from this), and
`tests/unit/services/test_host_assignments.py` keeps the two equal, field by field. A cell
whose JSON columns hold anything but the plain types the API stores (never, through the API) is
built through the pydantic model, as before, so the answer is the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.orm import Session

from cellplane import host_paths
from cellplane.errors import NotFound
from cellplane.state import networks as state_networks
from cellplane.state.models import Cell, CellNetwork, Host, Image, Network, Volume
from cellplane.wire import agent as wire

__all__ = ["answer", "network_name", "volume_engine_name"]


def network_name(project_id: str) -> str:
    return f"cp-{project_id}"


def volume_engine_name(volume_id: str) -> str:
    return f"cp-{volume_id}"


_NET = (Network.id, Network.name, Network.project_id, Network.subnet, Network.driver, Network.vni)

_CELL = (
    Cell.id,
    Cell.name,
    Cell.project_id,
    Cell.network_id,
    Cell.network_address,
    Cell.cpu,
    Cell.memory_mb,
    Cell.command,
    Cell.entrypoint,
    Cell.workdir,
    Cell.user,
    Cell.hostname,
    Cell.read_only,
    Cell.pids_limit,
    Cell.env,
    Cell.labels,
    Cell.ports,
    Cell.volumes,
    Cell.restart_policy,
    Cell.max_retries,
    Cell.isolation,
    Cell.stop_timeout,
    Cell.stop_request_timeout,
    Cell.desired_state,
    Cell.restarts,
    Cell.restart_requested_at,
    Cell.ended_at,
    Cell.generation,
    Cell.healthcheck,
    Image.id,
    Image.kind,
    Image.engine_ref,
    Image.sha256,
    *_NET,
)


def _network(row: Sequence[Any], address: str | None) -> dict[str, Any]:
    """`networks.description` as its JSON: row = (id, name, project_id, subnet, driver, vni)."""
    net_id, name, project_id, subnet, driver, vni = row
    return {
        "name": state_networks.engine_name_of(net_id, name, project_id),
        "subnet": subnet,
        "driver": driver,
        "vni": vni,
        "address": address,
    }


def _default_network(project_id: str) -> dict[str, Any]:
    """`hosts.network_description` as its JSON: a cell without a network row."""
    return {
        "name": network_name(project_id),
        "subnet": None,
        "driver": "bridge",
        "vni": None,
        "address": None,
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(type(x) is str for x in v)


def _str_map(v: Any) -> bool:
    return isinstance(v, dict) and all(type(k) is str and type(x) is str for k, x in v.items())


def _port(p: Any) -> dict[str, Any] | None:
    """A stored port as `PortAssignment`'s JSON, or None when it is not of the plain types."""
    if not isinstance(p, dict):
        return None
    cport, hport, proto = p.get("container_port"), p.get("host_port"), p.get("protocol", "tcp")
    if type(cport) is not int or (hport is not None and type(hport) is not int):
        return None
    if type(proto) is not str:
        return None
    return {"container_port": cport, "host_port": hport, "protocol": proto}


def _bind(m: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """A host path's `MountAssignment`, with the directory of the operator's list that admits it
    now (None when none does any more: the agent then refuses to mount it)."""
    try:
        root = host_paths.allowed_root(m["host_path"], allowed)
    except (host_paths.HostPathError, TypeError):
        root = None
    return {
        "path": m["path"],
        "read_only": bool(m.get("read_only")),
        "volume_id": "",
        "engine_name": "",
        "host_path": m["host_path"],
        "host_root": root,
    }


def _cell(
    row: Sequence[Any],
    vols: Mapping[str, tuple[str, str]],
    extra: list[dict[str, Any]],
    allowed: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One `CellAssignment` as its JSON (`vols`: the host's volumes, name@project -> (id, _);
    `allowed`: the operator's allowed host paths)."""
    (
        cell_id,
        name,
        project_id,
        _network_id,
        network_address,
        cpu,
        memory_mb,
        command,
        entrypoint,
        workdir,
        user,
        hostname,
        read_only,
        pids_limit,
        env,
        labels,
        ports,
        volumes,
        restart_policy,
        max_retries,
        isolation,
        stop_timeout,
        stop_request_timeout,
        desired_state,
        restarts,
        restart_requested_at,
        ended_at,
        generation,
        healthcheck,
        image_id,
        image_kind,
        engine_ref,
        sha256,
    ) = row[:33]
    net_row = row[33:]
    mounts: list[dict[str, Any]] = []
    pending: list[str] = []
    for m in volumes or []:
        if m.get("host_path") is not None:
            mounts.append(_bind(m, allowed))
            continue
        v = vols.get(m["volume"] + "@" + project_id)
        if v is None:
            pending.append(m["volume"])
            continue
        mounts.append(
            {
                "path": m["path"],
                "read_only": bool(m.get("read_only")),
                "volume_id": v[0],
                "engine_name": volume_engine_name(v[0]),
                "host_path": None,
                "host_root": None,
            }
        )
    plain_ports = [_port(p) for p in ports or []]
    timeout = stop_timeout if stop_request_timeout is None else stop_request_timeout
    out: dict[str, Any] = {
        "cell_id": cell_id,
        "name": name,
        "project_id": project_id,
        "network": (
            _network(net_row, network_address)
            if net_row[0] is not None
            else _default_network(project_id)
        ),
        "image": {"id": image_id, "kind": image_kind, "engine_ref": engine_ref, "sha256": sha256},
        "cpu": float(cpu),
        "memory_mb": memory_mb,
        "command": command,
        "entrypoint": entrypoint,
        "workdir": workdir,
        "user": user,
        "hostname": hostname,
        "read_only": bool(read_only),
        "pids_limit": pids_limit,
        "env": env or {},
        "labels": labels or {},
        "ports": plain_ports,
        "mounts": mounts,
        "restart": {"policy": restart_policy, "max_retries": max_retries},
        "isolation": isolation or "standard",
        "stop_timeout": None if timeout is None else float(timeout),
        "desired_state": desired_state,
        "restarts": restarts,
        "restart_requested_at": _iso(restart_requested_at),
        "ended_at": _iso(ended_at),
        "generation": generation or 1,
        "extra_networks": extra,
        "pending_volumes": pending,
        "healthcheck": healthcheck,
    }
    plain = (
        None not in plain_ports
        and (command is None or _strings(command))
        and (entrypoint is None or _strings(entrypoint))
        and _str_map(out["env"])
        and _str_map(out["labels"])
        and type(memory_mb) is int
        and type(restarts) is int
        and all(type(m["path"]) is str for m in mounts)
    )
    if plain:
        return out
    # Not the types the API stores: through the typed contract, which coerces or refuses them
    # exactly as the answer built from models always did.
    out["ports"] = ports or []
    return wire.CellAssignment.model_validate(out).model_dump(mode="json")


def _statements(delta: bool) -> tuple[Select[*tuple[Any, ...]], ...]:
    """The cells' statement and their further networks' (built once: building a select of
    36 columns cost more than running it), for a full view or a delta."""
    where = [Cell.host_id == bindparam("host_id")]
    if delta:
        where.append(Cell.host_rev > bindparam("since"))
    cells = (
        select(*_CELL)
        .join(Image, Image.id == Cell.image_id)
        .outerjoin(Network, Network.id == Cell.network_id)
        .where(*where)
    )
    # The cells' further networks (not their first), in order: through the cells, by host.
    extra = (
        select(CellNetwork.cell_id, CellNetwork.address, *_NET)
        .join(Network, Network.id == CellNetwork.network_id)
        .join(Cell, Cell.id == CellNetwork.cell_id)
        .where(
            *where,
            or_(Cell.network_id.is_(None), CellNetwork.network_id != Cell.network_id),
        )
        .order_by(CellNetwork.cell_id, CellNetwork.position)
    )
    return cells, extra


_HOST = select(
    Host.revision, Host.departed_revision, Host.fence_revision, Host.fenced_revision
).where(Host.id == bindparam("host_id"))
_VOLUMES = select(Volume.id, Volume.name, Volume.project_id, Volume.state).where(
    Volume.host_id == bindparam("host_id")
)
_FULL = _statements(delta=False)
_DELTA = _statements(delta=True)


def answer(
    s: Session, host_id: str, since: int, allowed_host_paths: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Every cell on the host whose desired state changed after revision `since` (all if 0), as
    the JSON of `wire.Assignments`; `s` is a reader (one snapshot: see `hosts.assignments_answer`).
    `allowed_host_paths`: the operator's (`Services.allowed_host_paths`), for host path mounts."""
    conn = s.connection()
    h = conn.execute(_HOST, {"host_id": host_id}).one_or_none()
    if h is None:
        raise NotFound(f"host {host_id!r} does not exist")
    revision, departed, fence, fenced = h
    # A full view when the agent's is older than a departure (a cell moved away must be removed
    # there) or while the host is fenced: a delta would not name what left.
    full = not (0 < since <= revision) or since < departed or fence > fenced
    cells_q, extra_q = _FULL if full else _DELTA
    params = {"host_id": host_id} if full else {"host_id": host_id, "since": since}
    vols = {
        name + "@" + project_id: (vid, state)
        for vid, name, project_id, state in conn.execute(_VOLUMES, {"host_id": host_id})
    }
    rows = conn.execute(cells_q, params).all()
    extra: dict[str, list[dict[str, Any]]] = {}
    if rows:
        for cell_id, address, *net in conn.execute(extra_q, params):
            extra.setdefault(cell_id, []).append(_network(net, address))
    return {
        "api_version": wire.API_VERSION,
        "revision": revision,
        "full": full,
        "cells": [_cell(row, vols, extra.get(row[0], []), allowed_host_paths) for row in rows],
        "volumes": [
            {"volume_id": vid, "engine_name": volume_engine_name(vid), "state": state}
            for vid, state in vols.values()
        ],
    }
