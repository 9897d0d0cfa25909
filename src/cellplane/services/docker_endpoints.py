"""Docker-compatible endpoints: one Docker Engine API listener per project, on its own TLS port.

Called by `cellplane.api.routes_docker` (create, list, delete) and by `cellplane.dockerapi`
(which listens for every endpoint in the table and serves it). A change publishes the topic
`docker-endpoints`, which wakes the listener supervisor in the server process.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cellplane.errors import Conflict, NotFound, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.services.cells import project_for
from cellplane.services.context import Principal, Services
from cellplane.services.views import iso
from cellplane.state.models import DockerEndpoint, Image, Project, Volume

__all__ = [
    "TOPIC",
    "Listener",
    "authorize",
    "create",
    "delete",
    "endpoint_project",
    "image_named",
    "list_endpoints",
    "listeners",
    "missing_volumes",
]

#: Published on every change; the listener supervisor re-reads the table when it moves.
TOPIC = "docker-endpoints"
MIN_PORT = 1024


def _public_host(svc: Services) -> str:
    host = urlparse(svc.public_url).hostname if svc.public_url else None
    return host or svc.docker_listen_host


def _view(svc: Services, ep: DockerEndpoint, project: str) -> dict[str, Any]:
    host = _public_host(svc)
    shown = f"[{host}]" if ":" in host else host
    return {
        "id": ep.id,
        "project": project,
        "port": ep.port,
        "docker_host": f"tcp://{shown}:{ep.port}",
        "created_by": ep.created_by,
        "created_at": iso(ep.created_at),
    }


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def create(
    svc: Services, s: Session, principal: Principal, project_name: str, port: int | None
) -> dict[str, Any]:
    """Open a project's endpoint on `port` (None: a free one). One endpoint per project."""
    project = project_for(s, principal, project_name, "cells:write")
    if s.scalar(select(DockerEndpoint.id).where(DockerEndpoint.project_id == project.id)):
        raise Conflict(f"project {project.name!r} has a Docker endpoint already")
    host = svc.docker_listen_host
    if port is None:
        port = _pick_port(host)
    elif not MIN_PORT <= port <= 65535:
        raise ValidationFailed.field("port", f"must be {MIN_PORT}-65535")
    elif s.scalar(select(DockerEndpoint.id).where(DockerEndpoint.port == port)) or not _free(
        host, port
    ):
        raise Conflict(f"port {port} on {host} is in use")
    ep = DockerEndpoint(
        id=new_id("dep"),
        project_id=project.id,
        port=port,
        created_by=principal.subject,
        created_at=utcnow(),
    )
    s.add(ep)
    try:
        s.flush()
    except IntegrityError as exc:  # a concurrent create took the project or the port
        raise Conflict(f"project {project.name!r} or port {port} has an endpoint already") from exc
    return _view(svc, ep, project.name)


def list_endpoints(svc: Services, principal: Principal, project_name: str) -> dict[str, Any]:
    with svc.db.reader() as s:
        project = project_for(s, principal, project_name, "cells:read")
        eps = s.scalars(select(DockerEndpoint).where(DockerEndpoint.project_id == project.id))
        return {"items": [_view(svc, ep, project.name) for ep in eps], "next_cursor": None}


def delete(svc: Services, principal: Principal, project_name: str) -> None:
    """Close the project's endpoint; its containers (cells) stay."""
    with svc.db.session() as s:
        project = project_for(s, principal, project_name, "cells:write")
        ep = s.scalar(select(DockerEndpoint).where(DockerEndpoint.project_id == project.id))
        if ep is None:
            raise NotFound(f"project {project.name!r} has no Docker endpoint")
        s.delete(ep)
    svc.notifier.publish(TOPIC)


Listener = tuple[str, str, int]
"""(endpoint id, project id, port): what the supervisor serves."""


def listeners(svc: Services) -> list[Listener]:
    """Every endpoint to serve, for the listener supervisor (no principal: the server's own)."""
    with svc.db.reader() as s:
        return [(ep.id, ep.project_id, ep.port) for ep in s.scalars(select(DockerEndpoint))]


def endpoint_project(svc: Services, endpoint_id: str) -> tuple[str, str, str] | None:
    """(project id, project name, tenant id) of an endpoint, None once it is gone."""
    with svc.db.reader() as s:
        ep = s.get(DockerEndpoint, endpoint_id)
        if ep is None:
            return None
        p = s.get(Project, ep.project_id)
        return None if p is None else (p.id, p.name, p.tenant_id)


def authorize(svc: Services, principal: Principal, project_id: str, permission: str) -> None:
    """The caller holds `permission` in the endpoint's project (NotFound or Forbidden if not)."""
    with svc.db.reader() as s:
        project_for(s, principal, project_id, permission)


def image_named(svc: Services, names: list[str]) -> tuple[str, str | None] | None:
    """The first of `names` that is an image of the catalogue (a Docker reference's forms), with
    its archive's path (None: the host image)."""
    with svc.db.reader() as s:
        for name in names:
            row = s.execute(select(Image.name, Image.path).where(Image.name == name)).first()
            if row is not None:
                return row.name, row.path
    return None


def missing_volumes(svc: Services, project_id: str, names: list[str]) -> list[str]:
    """Which of `names` are not volumes of the project (yet)."""
    with svc.db.reader() as s:
        have = set(
            s.scalars(
                select(Volume.name).where(Volume.project_id == project_id, Volume.name.in_(names))
            )
        )
    return [n for n in dict.fromkeys(names) if n not in have]
