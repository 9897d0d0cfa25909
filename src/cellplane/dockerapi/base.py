"""What every handler of a Docker-compatible endpoint shares: its context, the caller, the cells of
its project, and Docker's error shape.

Handlers call the same services as the REST API (`cellplane.services`), in worker threads: the
database is synchronous. A container is a cell of the endpoint's project, nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from aiohttp import web

from cellplane.dockerapi import naming
from cellplane.dockerapi.admissions import Admissions
from cellplane.dockerapi.mapping import Refused, loads
from cellplane.dockerapi.views import docker_id
from cellplane.errors import NotFound
from cellplane.identity.authn import Authenticator
from cellplane.services import audit, cells, docker_resources, tasks
from cellplane.services.context import Principal, Services

__all__ = [
    "AUDITED",
    "CTX",
    "EndpointContext",
    "audit_event",
    "blocking",
    "context",
    "flag",
    "json_body",
    "json_response",
    "match_ref",
    "principal",
    "project_cells",
    "record_change",
    "resolve",
    "settle",
    "until_made",
]

T = TypeVar("T")


@dataclass
class EndpointContext:
    svc: Services
    authn: Authenticator
    agent: httpx.AsyncClient
    endpoint_id: str
    project_id: str
    project_name: str
    admissions: Admissions = field(default_factory=Admissions)


CTX: web.AppKey[EndpointContext] = web.AppKey("cellplane_endpoint", EndpointContext)
#: A typed key: aiohttp warns on a plain string (an error where warnings are, as in the tests).
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("cellplane_principal", Principal)
#: Set once a request's audit event is recorded (with its change, in the same transaction).
AUDITED: web.RequestKey[bool] = web.RequestKey("cellplane_audited", bool)


def context(request: web.Request) -> EndpointContext:
    return request.app[CTX]


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (database) call in the loop's worker threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


async def record_change(
    request: web.Request, action: str, cell: dict[str, Any], detail: dict[str, Any]
) -> None:
    """An audit event for a change to `cell` that the endpoint's per-request audit (POSTs and
    DELETEs) does not name: who, from where, through which endpoint."""
    ctx, p = context(request), principal(request)
    await blocking(
        audit.record_now,
        ctx.svc,
        tenant_id=p.tenant_id,
        actor=audit.actor_of(p),
        action=action,
        target=f"cell:{cell['id']}",
        source=request.remote or "",
        detail={**detail, "endpoint": ctx.endpoint_id},
    )


def audit_event(request: web.Request, status: int) -> dict[str, Any]:
    """The audit event of a changing request answered with `status`: who, what (the route),
    from where, through which endpoint, and the outcome."""
    p = request.get(PRINCIPAL)
    resource = request.match_info.route.resource
    route = resource.canonical if resource else ""
    outcome = "success" if status < 400 else "denied" if status in (401, 403) else "failure"
    return {
        "tenant_id": p.tenant_id if p else None,
        "actor": audit.actor_of(p),
        "action": f"docker {request.method} {route}",
        "target": request.path,
        "outcome": outcome,
        "source": request.remote or "",
        "detail": {"status": status, "endpoint": context(request).endpoint_id},
    }


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON with the bare `application/json` type: the docker CLI reads an error's message
    only under exactly that type (aiohttp's own adds a charset)."""
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


async def json_body(request: web.Request) -> Any:
    """The request's JSON body (UTF-8, whatever charset the Content-Type names, as dockerd
    reads it); Docker's 400 when it is not JSON, nested too deeply included."""
    try:
        return loads(await request.read())
    except ValueError as exc:
        raise Refused(400, f"the request body is not JSON: {exc}") from exc


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter as Docker clients send them (1/0, true/false)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise Refused(400, f"invalid value for {name!r}: {raw!r} (expected a boolean)")


def project_cells(ctx: EndpointContext, p: Principal) -> list[dict[str, Any]]:
    """Every cell of the endpoint's project (their list views: no events)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = cells.list_cells(
            ctx.svc, p, ctx.project_id, labels={}, name=None, state=None, limit=1000, cursor=cursor
        )
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


def match_ref(ref: str, refs: list[tuple[str, str]]) -> str:
    """The id of the one cell of `refs` ((id, name) pairs) that a container reference names: a
    name, a cell id or a Docker id, else a unique prefix of a Docker id. Docker's 404 (none)
    or 400 (an ambiguous prefix) otherwise."""
    ref = ref.removeprefix("/")
    exact = [
        cid for cid, name in refs if ref in (cid, docker_id(cid)) or naming.same_name(ref, name)
    ]
    found = exact or ([cid for cid, _ in refs if docker_id(cid).startswith(ref)] if ref else [])
    if len(found) > 1:
        raise Refused(400, f"multiple IDs found with provided prefix: {ref}")
    if not found:
        raise Refused(404, f"No such container: {ref}")
    return found[0]


def resolve(ctx: EndpointContext, p: Principal, ref: str) -> dict[str, Any]:
    """A container by name, full id, unique id prefix or cell id, in this endpoint's project
    only; its full view (with events). Docker's 404 otherwise.

    The reference is matched against the project's cells' ids and names alone: each request
    names a container, and building every cell's view to find one made each request cost as
    much as `docker ps -a`."""
    cell_id = match_ref(ref, docker_resources.cell_refs(ctx.svc, ctx.project_id))
    try:
        return cells.get(ctx.svc, p, cell_id)
    except NotFound as exc:
        raise Refused(404, f"No such container: {ref.removeprefix('/')}") from exc


async def settle(
    ctx: EndpointContext, p: Principal, task_id: str, timeout: float
) -> dict[str, Any]:
    """Wait for a task to end (COMPLETED or ERROR), woken by its topic: the task's view, or
    the last seen after `timeout` seconds; a completed task's id and state alone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    topic = f"task:{task_id}"
    while True:
        seen = ctx.svc.notifier.version(topic)
        # Its state alone until it ends (each of its steps wakes this), then its whole view.
        state = await blocking(docker_resources.task_state, ctx.svc, task_id)
        left = deadline - loop.time()
        if state == "COMPLETED":
            return {"id": task_id, "state": state}
        if state in tasks.TERMINAL or state is None or left <= 0:
            return await blocking(tasks.visible_task, ctx.svc, p, task_id)
        await ctx.svc.notifier.wait(topic, seen, min(left, 2.0))


#: How long what follows `docker create` waits for the container to be made.
MADE_WAIT_S = 60.0


def _being_made(cell: dict[str, Any]) -> bool:
    return (
        cell["desired_state"] == "CREATED"
        and not cell.get("container_id")
        and cell["state"] != "FAILED"
    )


async def until_made(
    ctx: EndpointContext, p: Principal, cell: dict[str, Any]
) -> dict[str, Any] | None:
    """The cell (as read last) once the container of a just created cell (desired CREATED) is
    made, or will not be (started first, failed, `MADE_WAIT_S` passed); None once it is gone.
    `docker create` answers at once, and what follows at once (`cp` into it, `network connect`,
    an attach before the start) acts on the container, which must exist by then."""
    topic = f"cell:{cell['id']}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MADE_WAIT_S
    while _being_made(cell) and loop.time() < deadline:
        seen = ctx.svc.notifier.version(topic)
        try:
            cell = await blocking(cells.get, ctx.svc, p, cell["id"])
        except NotFound:
            return None
        if _being_made(cell):
            await ctx.svc.notifier.wait(topic, seen, 1.0)
    return cell
