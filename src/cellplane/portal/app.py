"""The portal's ASGI app (Starlette: pages, forms, SSE and its static files), mounted by the
server at `/portal` (`install`)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from cellplane.errors import CellplaneError
from cellplane.portal import (
    admin,
    audit_pages,
    auth,
    cluster_ops,
    clusters,
    confirm,
    directory,
    image_pages,
    ops,
    pages,
    streams,
    task_pages,
    volumes,
)
from cellplane.portal.operator_web import Confirmed
from cellplane.portal.web import Portal, SignIn, error_page, session_of, sign_in_redirect

__all__ = ["create_portal"]

log = logging.getLogger("cellplane.portal")
Handler = Callable[[Request], Awaitable[Response]]
_STATIC = Path(__file__).parent / "static"


class _Static(StaticFiles):
    """The vendored htmx, the portal's script and stylesheet: cached for an hour, no sniffing."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        resp.headers["Cache-Control"] = "public, max-age=3600"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


def _guarded(handler: Handler) -> Handler:
    """Send the browser to sign in when the session is missing or ended; show a domain error
    (not found, forbidden, refused) as a page with its status."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except SignIn:
            return sign_in_redirect(request)
        except CellplaneError as exc:
            return error_page(request, exc, session_of(request))

    run.__name__ = handler.__name__
    return run


#: The operators' actions behind a confirmation page (each: a GET page and a POST).
_CONFIRMED = (
    admin.TENANT_DELETE,
    admin.PROJECT_DELETE,
    directory.USER_DISABLE,
    directory.USER_ENABLE,
    directory.USER_DELETE,
    directory.GROUP_DELETE,
    directory.CLIENT_DELETE,
    directory.UNASSIGN,
    audit_pages.REVOKE,
)


def _confirmed(act: Confirmed) -> list[Route]:
    page, post = act.handlers()
    return [Route(act.path, _guarded(page)), Route(act.path, _guarded(post), methods=["POST"])]


def create_portal(parent: object) -> Starlette:
    """The portal over the server app `parent` (its services, token verifier, issuer routes and
    client to the agents are read from `parent.state`)."""
    g = _guarded
    routes = [
        Route("/", g(pages.home)),
        Route("/login", auth.login),
        Route("/login", g(auth.login_post), methods=["POST"]),
        Route("/callback", auth.callback),
        Route("/logout", g(auth.logout), methods=["POST"]),
        Route("/signed-out", auth.signed_out),
        Route("/projects/{project}/", g(pages.dashboard)),
        Route("/projects/{project}/tasks", g(task_pages.tasks_page)),
        Route("/projects/{project}/tasks/events", g(streams.tasks_events)),
        Route("/projects/{project}/cells", g(pages.cells_list)),
        Route("/projects/{project}/cells/new", g(pages.cell_new)),
        Route("/projects/{project}/cells/new", g(pages.cell_new_post), methods=["POST"]),
        Route("/projects/{project}/quota", g(ops.quota_page)),
        Route("/projects/{project}/quota", g(ops.quota_post), methods=["POST"]),
        Route("/cells/{cell_id}", g(pages.cell_detail)),
        Route("/cells/{cell_id}/action", g(pages.cell_action), methods=["POST"]),
        Route("/cells/{cell_id}/delete", g(confirm.cell_delete_page)),
        Route("/cells/{cell_id}/events", g(streams.cell_events)),
        Route("/cells/{cell_id}/logs", g(streams.cell_logs)),
        Route("/projects/{project}/clusters", g(clusters.clusters_page)),
        Route("/projects/{project}/clusters", g(clusters.clusters_post), methods=["POST"]),
        Route("/clusters/{cluster_id}", g(clusters.cluster_detail)),
        Route("/clusters/{cluster_id}/events", g(clusters.cluster_events)),
        Route(
            "/projects/{project}/clusters/upload", g(cluster_ops.cluster_upload), methods=["POST"]
        ),
        Route("/clusters/{cluster_id}/action", g(cluster_ops.cluster_action), methods=["POST"]),
        Route("/clusters/{cluster_id}/resize", g(cluster_ops.cluster_resize), methods=["POST"]),
        Route("/clusters/{cluster_id}/export", g(cluster_ops.cluster_export)),
        Route("/clusters/{cluster_id}/delete", g(confirm.cluster_delete_page)),
        Route("/clusters/{cluster_id}/delete", g(cluster_ops.cluster_delete), methods=["POST"]),
        Route("/projects/{project}/volumes", g(volumes.volumes_page)),
        Route("/projects/{project}/volumes", g(volumes.volumes_post), methods=["POST"]),
        Route("/volumes/{volume_id}/delete", g(confirm.volume_delete_page)),
        Route("/volumes/{volume_id}/delete", g(volumes.volume_delete), methods=["POST"]),
        Route("/hosts", g(ops.hosts_page)),
        Route("/hosts/{host_id}/maintenance", g(ops.maintenance_post), methods=["POST"]),
        Route("/tenants", g(admin.tenants_page)),
        Route("/tenants", g(admin.tenants_post), methods=["POST"]),
        Route("/projects", g(admin.projects_page)),
        Route("/projects", g(admin.projects_post), methods=["POST"]),
        Route("/directory", g(directory.directory_page)),
        Route("/directory/users", g(directory.user_post), methods=["POST"]),
        Route("/directory/groups", g(directory.group_post), methods=["POST"]),
        Route("/directory/groups/{group}/members", g(directory.member_post), methods=["POST"]),
        Route("/directory/clients", g(directory.client_post), methods=["POST"]),
        Route("/directory/roles", g(directory.assign_post), methods=["POST"]),
        Route("/images", g(image_pages.images_page)),
        Route("/images/upload", g(image_pages.upload), methods=["POST"]),
        Route("/audit", g(audit_pages.audit_page)),
        Route("/certificates", g(audit_pages.certificates_page)),
        *(r for act in _CONFIRMED for r in _confirmed(act)),
        Mount("/static", app=_Static(directory=_STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    state = parent.state  # type: ignore[attr-defined]
    app.state.portal = Portal(state.services, state.authenticator, parent)
    return app
