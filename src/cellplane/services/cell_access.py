"""Where to reach a cell's container through its host agent (logs, exec), for the API, the
Docker-compatible endpoints and `services.agent_proxy`. The agent's secret is stored sealed
(`cellplane.sealing`) and opened here, where it is used."""

from __future__ import annotations

from cellplane.errors import Conflict
from cellplane.sealing import AGENT_SECRET_COLUMN
from cellplane.services import audit
from cellplane.services.cells import _visible
from cellplane.services.context import Principal, Services
from cellplane.state.models import Cell, Host

__all__ = ["locate", "locate_exec"]


def _agent_secret(svc: Services, host: Host) -> str | None:
    return svc.sealer.open(host.agent_secret, AGENT_SECRET_COLUMN) if host.agent_secret else None


def locate(
    svc: Services, principal: Principal, cell_id: str, permission: str = "cells:read"
) -> tuple[str, str | None, str]:
    """Where to reach a cell's container: (agent url, agent secret, cell id) for logs and exec."""
    with svc.db.reader() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, permission)
        host = s.get(Host, cell.host_id) if cell.host_id else None
        if host is None or not host.agent_url or cell.container_id is None:
            raise Conflict(f"cell {cell.name!r} has no container yet (state {cell.state})")
        return host.agent_url, _agent_secret(svc, host), cell.id


def locate_exec(
    svc: Services, principal: Principal, cell_id: str, command: list[str], *, mode: str
) -> tuple[str, str | None, str]:
    """`locate` for an exec (`cells:write`): the cell must be running. Records the `cell.exec`
    audit event (its command, and `mode`: "run", "interactive", "tty")."""
    with svc.db.session() as s:
        cell = _visible(s, principal, s.get(Cell, cell_id), cell_id, "cells:write")
        host = s.get(Host, cell.host_id) if cell.host_id else None
        if cell.state != "RUNNING" or host is None or not host.agent_url:
            raise Conflict(
                f"cell {cell.name!r} is not running (state {cell.state}); "
                f"exec needs a running cell (`cellplane cell start {cell.name}`)"
            )
        audit.record_cell(
            s,
            principal,
            cell,
            "cell.exec",
            {"cell": cell.name, "command": [c[:256] for c in command[:64]], "mode": mode},
        )
        return host.agent_url, _agent_secret(svc, host), cell.id
