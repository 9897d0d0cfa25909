"""What the cluster read routes show: the catalog, clusters with their nodes, exports.

Called by :mod:`cellplane.api.routes_clusters` (``GET /v1/catalog/...``, ``GET /v1/clusters...``,
``GET /v1/clusters/{id}/export``). Visibility and the catalog come from
:mod:`cellplane.services.clusters` (looked up there at call time, so the one loaded catalog and
the host's binaries check are the same for reads and changes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.clusters import Catalog, export_spec
from cellplane.clusters.deployable import distro_status
from cellplane.clusters.health import CellFacts, node_problem
from cellplane.clusters.spec_model import cell_name
from cellplane.errors import NotFound
from cellplane.services import clusters as clusters_mod
from cellplane.services import tasks as tasks_mod
from cellplane.services.cells import project_for
from cellplane.services.cluster_health import HEALABLE_STATES, event_views
from cellplane.services.context import Principal, Services
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.models import Cell, Host, Project, Task

__all__ = [
    "catalog_distros",
    "catalog_roles",
    "catalog_specs",
    "export",
    "find",
    "get",
    "list_clusters",
    "missing_binaries_of",
]

# --- the catalog ---


def catalog_specs() -> list[dict[str, Any]]:
    return [
        {
            "vendor": cs.entry.vendor,
            "version": cs.entry.version,
            "type": cs.entry.type,
            "appManager": cs.entry.app_manager,
            "path": cs.entry.path,
            "spec": export_spec(cs.spec),
        }
        for cs in clusters_mod.load_catalog().specs
    ]


def catalog_distros() -> list[dict[str, Any]]:
    """Every distro with whether it can be deployed here and, if not, why (one line per role:
    the binaries it lacks and the packages that bring them)."""
    cat = clusters_mod.load_catalog()
    out = []
    for d in sorted(cat.distros.values(), key=lambda d: d.name):
        types = [cs.entry.type for cs in cat.specs if cs.entry.matches(d.vendor, d.version)]
        status = distro_status(cat, d.name, clusters_mod.host_has)
        out.append(
            {
                "name": d.name,
                "vendor": d.vendor,
                "version": d.version,
                "roles": sorted(d.roles),
                "types": types,
                "deployable": status.deployable,
                "reasons": list(status.reasons),
            }
        )
    return out


def missing_binaries_of(cat: Catalog, role: str) -> list[str]:
    return [b for b in cat.roles[role].requires.binaries if not clusters_mod.host_has(b)]


def catalog_roles() -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "description": r.description,
            "ports": dict(r.ports),
            "provides": list(r.provides),
            "waits_for": list(r.waits_for),
            "scale_in": r.scale_in,
            "data_dir": r.data_dir,
            "requires": list(r.requires.binaries),
            "missing": missing_binaries_of(clusters_mod.load_catalog(), r.name),
        }
        for r in clusters_mod.load_catalog().roles.values()
    ]


# --- clusters ---


def _endpoints(plan_roles: Mapping[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    cat = clusters_mod.load_catalog()
    out: dict[str, dict[str, list[str]]] = {}
    for role, nodes in plan_roles.items():
        definition = cat.roles.get(role)
        if definition is None or not definition.ports:
            continue
        out[role] = {
            port_name: [f"{n}:{port}" for n in nodes]
            for port_name, port in definition.ports.items()
        }
    return out


def _leaders(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per role that elects a leader: the node the executor found leading and its endpoints
    (cellplane.controller.clusters.leaders); never a node shown lost or not ready."""
    cat = clusters_mod.load_catalog()
    out: dict[str, dict[str, Any]] = {}
    for n in nodes:
        if n["state"] != "SERVICE_READY":
            continue
        for role, state in n["role_states"].items():
            definition = cat.roles.get(role)
            if state == "LEADER" and definition is not None:
                ports = {name: f"{n['name']}:{port}" for name, port in definition.ports.items()}
                out[role] = {"node": n["name"], "endpoints": ports}
    return out


def _urls(plan_roles: Mapping[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """Role -> port name -> ``<scheme>://node:port`` for the ports a role gives a scheme."""
    cat = clusters_mod.load_catalog()
    out: dict[str, dict[str, list[str]]] = {}
    for role, nodes in plan_roles.items():
        definition = cat.roles.get(role)
        if definition is None or not definition.urls:
            continue
        out[role] = {
            port_name: [f"{scheme}://{n}:{definition.ports[port_name]}" for n in nodes]
            for port_name, scheme in definition.urls.items()
        }
    return out


def _count(value: Any) -> Any:
    """A stored instanceNum: the range form ``"[3,1,5]"`` shows its value, 3."""
    if isinstance(value, str) and value.strip().startswith("["):
        head = value.strip()[1:].split(",", 1)[0].strip()
        return int(head) if head.isascii() and head.isdigit() else value
    return value


def _view(s: Session, c: Cluster, *, with_nodes: bool = True) -> dict[str, Any]:
    p = s.get(Project, c.project_id)
    task = s.get(Task, c.task_id) if c.task_id else None
    spec = c.spec or {}
    view: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "project": p.name if p else "",
        "distro": c.distro,
        "type": c.type,
        "state": c.state,
        "message": c.message,
        "task": tasks_mod.task_view(task) if task is not None else None,
        "nodeGroups": [
            {
                "name": g.get("name"),
                "cellName": cell_name(str(g.get("name", ""))),
                "roles": g.get("roles"),
                "instanceNum": _count(g.get("instanceNum")),
            }
            for g in spec.get("nodeGroups", [])
        ],
        "placement_notes": list((c.placement or {}).get("notes", [])),
        "created_at": c.created_at.isoformat(),
        "updated_at": c.updated_at.isoformat(),
    }
    if with_nodes:
        nodes = s.scalars(
            select(ClusterNode).where(ClusterNode.cluster_id == c.id).order_by(ClusterNode.name)
        ).all()
        roles: dict[str, list[str]] = {}
        items = []
        lost: list[str] = []
        # Only while it runs: a stop or delete in progress takes the cells down on purpose.
        watched = c.state in HEALABLE_STATES and c.operation in (None, "HEAL")
        for n in nodes:
            cell = s.get(Cell, n.cell_id) if n.cell_id else None
            host = s.get(Host, cell.host_id) if cell and cell.host_id else None
            for r in n.roles:
                roles.setdefault(r, []).append(n.name)
            # Never shown ready when its cell says otherwise, even before the executor's health
            # pass has marked it (see cellplane.controller.clusters.health).
            problem = node_problem(n.state, n.ready_restarts, _facts(cell)) if watched else None
            if problem is not None:
                lost.append(f"node {n.name} lost: {problem}")
            items.append(
                {
                    "name": n.name,
                    "group": n.group,
                    "index": n.index,
                    "roles": list(n.roles),
                    "role_states": dict(n.role_states or {}),
                    "state": n.state if problem is None else "FAILED",
                    "message": n.message if problem is None else f"lost: {problem}",
                    "log_tail": n.log_tail,
                    "cell": n.cell_id,
                    "cell_state": cell.state if cell else None,
                    "address": cell.address if cell else None,
                    "host": cell.host_id if cell else None,
                    "host_name": host.name if host else None,
                    "cell_name": cell.name if cell else None,
                }
            )
        view["nodes"] = items
        view["endpoints"] = _endpoints(roles)
        view["leaders"] = _leaders(items)
        view["urls"] = _urls(roles)
        view["events"] = event_views(s, c.id)
        if lost and c.state == "RUNNING" and c.operation is None:
            view["state"] = "DEGRADED"
            view["message"] = "; ".join(lost)
    return view


def _facts(cell: Cell | None) -> CellFacts | None:
    if cell is None:
        return None
    return CellFacts(cell.desired_state, cell.state, cell.restarts or 0, cell.message)


def list_clusters(svc: Services, principal: Principal, project_name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        project = project_for(s, principal, project_name, "cells:read")
        rows = s.scalars(
            select(Cluster).where(Cluster.project_id == project.id).order_by(Cluster.name)
        ).all()
        return {"items": [_view(s, c, with_nodes=True) for c in rows], "next_cursor": None}


def get(svc: Services, principal: Principal, cluster_id: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        return _view(s, clusters_mod.visible(s, principal, cluster_id, "cells:read"))


def find(svc: Services, principal: Principal, project_name: str, name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        project = project_for(s, principal, project_name, "cells:read")
        c = s.scalar(select(Cluster).where(Cluster.project_id == project.id, Cluster.name == name))
        if c is None:
            raise NotFound(f"cluster {name!r} does not exist in project {project.name!r}")
        return _view(s, c)


def export(svc: Services, principal: Principal, cluster_id: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        c = clusters_mod.visible(s, principal, cluster_id, "cells:read")
        return dict(c.spec)
