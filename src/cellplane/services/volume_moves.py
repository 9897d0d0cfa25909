"""Moving a cell whose volume lives on its host: stop, copy the data, start there, drop the old copy.

`start` (called by `services.moves.move` and `drain`) writes the MOVE_CELL task with steps STOP,
COPY_VOLUME (carrying the target host), SCHEDULE, PREPARE_IMAGE, CREATE, START, RUNNING and asks
the old host to stop the cell (so the data rests while it is copied). The controller's pass
`advance` then, once STOP is done, streams each volume from the old host's agent to the new
one's (`GET`/`PUT /volumes/{name}/archive`, sha256 verified by the receiver against the
sender's), and only when every copy is verified binds the volumes to the new host and assigns
the cell there (a new generation); the old copies are removed last (`DELETE /volumes/{name}`,
step REMOVE_OLD_COPY, retried on each pass until the old host has removed the cell's old
container, which still holds the volume).
A failed copy changes nothing: the task fails with the reason and the cell runs again where
its data is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from cellplane.ids import new_id, utcnow
from cellplane.sealing import AGENT_SECRET_COLUMN
from cellplane.services import agent_tls
from cellplane.services import tasks as tasks_mod
from cellplane.services.cell_mounts import volume_names
from cellplane.services.cells import bump_host
from cellplane.services.context import Services
from cellplane.services.hosts import volume_engine_name
from cellplane.state.conflicts import lock_cell_host
from cellplane.state.models import Cell, CellEvent, Host, Task, Volume
from cellplane.wire.agent import VOLUME_SHA_HEADER

__all__ = ["COPY_STEP", "MOVE_KIND", "STEPS", "CopyFailed", "advance", "copy_volume", "start"]


MOVE_KIND = "MOVE_CELL"
COPY_STEP = "COPY_VOLUME"
CLEAN_STEP = "REMOVE_OLD_COPY"
STEPS = ("STOP", COPY_STEP, *tasks_mod.CREATE_STEPS, CLEAN_STEP)
# Generous: a volume is copied in one stream; the receiver hashes and unpacks it before answering.
COPY_TIMEOUT = httpx.Timeout(30.0, read=600.0, write=600.0)


class CopyFailed(Exception):
    """A volume copy did not complete and verify; the message says where and why."""


@dataclass(frozen=True)
class Agent:
    name: str
    url: str
    secret: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def copy_volume(client: httpx.Client, src: Agent, dst: Agent, engine_name: str) -> str:
    """Stream one volume from `src` to `dst`; returns the sha256 both sides agree on."""
    try:
        with client.stream(
            "GET", f"{src.url}/volumes/{engine_name}/archive", headers=src.headers
        ) as r:
            if r.status_code != 200:
                r.read()
                raise CopyFailed(f"{src.name} could not send it: {r.status_code} {r.text[:300]}")
            sha = str(r.headers.get(VOLUME_SHA_HEADER, ""))
            length = str(r.headers.get("content-length", ""))
            put = client.put(
                f"{dst.url}/volumes/{engine_name}/archive",
                content=r.iter_raw(),
                headers={**dst.headers, VOLUME_SHA_HEADER: sha, "Content-Length": length},
            )
    except httpx.HTTPError as e:
        raise CopyFailed(f"transfer from {src.name} to {dst.name} failed: {e}") from None
    if put.status_code != 200:
        raise CopyFailed(f"{dst.name} refused it: {put.status_code} {put.text[:300]}")
    answer: dict[str, Any] = put.json()
    got = str(answer.get("sha256", ""))
    if not sha or got != sha:
        raise CopyFailed(f"checksum mismatch: {src.name} sent {sha}, {dst.name} got {got}")
    return sha


def _remove_copy(client: httpx.Client, src: Agent, engine_name: str) -> str | None:
    """Remove the old copy; None when done, else why not."""
    try:
        r = client.delete(f"{src.url}/volumes/{engine_name}", headers=src.headers)
    except httpx.HTTPError as e:
        return str(e)
    return None if r.status_code == 200 else f"{r.status_code} {r.text[:300]}"


def start(s: Session, cell: Cell, target: Host, now: datetime, by: str, tenant: str | None) -> Task:
    """Write the MOVE_CELL task and ask the old host to stop the cell (see the module doc)."""
    task = tasks_mod.new_task(
        s,
        task_id=new_id("tsk"),
        kind=MOVE_KIND,
        entity_kind="cell",
        entity_id=cell.id,
        tenant_id=tenant,
        project_id=cell.project_id,
        steps=STEPS,
        now=now,
    )
    if cell.task_id:
        old = s.get(Task, cell.task_id)
        if old is not None:
            tasks_mod.fail(old, f"superseded by {MOVE_KIND} task {task.id}", now)
    cell.task_id = task.id
    resume = cell.desired_state == "RUNNING"
    task.steps = [
        {**st, "host": target.id, "resume": resume} if st["name"] == COPY_STEP else st
        for st in task.steps
    ]
    s.add(CellEvent(cell_id=cell.id, at=now, type="moving", message=f"to {target.name} by {by}"))
    if resume and cell.state not in ("STOPPED", "EXITED", "FAILED", "PENDING"):
        cell.desired_state = "STOPPED"  # the data must rest while it is copied
        assert cell.host_id is not None
        cell.host_rev = bump_host(s, cell.host_id)
        tasks_mod.advance(task, "STOP", "STARTED", now, message="stopping for the copy")
    else:
        tasks_mod.advance(task, "STOP", "COMPLETED", now)
    return task


def _copy_step(task: Task) -> dict[str, Any] | None:
    for st in task.steps:
        if st["name"] == COPY_STEP:
            return dict(st)
    return None


def _agent(svc: Services, h: Host | None) -> Agent | None:
    """The host's agent endpoint, with its secret unsealed (it is sealed at rest)."""
    if h is None or not h.agent_url:
        return None
    secret = svc.sealer.open(h.agent_secret, AGENT_SECRET_COLUMN) if h.agent_secret else None
    return Agent(h.name, h.agent_url, secret)


def _plan(
    svc: Services, now: datetime
) -> list[tuple[str, str, Agent | None, Agent | None, list[str]]]:
    """(task, cell, old agent, new agent, volume engine names) of each move ready to copy."""
    out = []
    with svc.db.session() as s:
        for task in s.scalars(
            select(Task).where(Task.kind == MOVE_KIND, Task.state.in_(("QUEUED", "STARTED")))
        ):
            step = _copy_step(task)
            stop = next(st for st in task.steps if st["name"] == "STOP")
            if step is None or step["state"] != "QUEUED" or stop["state"] != "COMPLETED":
                continue
            cell = s.get(Cell, task.entity_id)
            if cell is None or cell.host_id is None:
                tasks_mod.fail(task, "the cell is gone or has no host any more", now)
                continue
            names = volume_names(cell.volumes)
            vols = s.scalars(
                select(Volume).where(
                    Volume.project_id == cell.project_id,
                    Volume.name.in_(names),
                    Volume.host_id == cell.host_id,
                )
            ).all()
            src = _agent(svc, s.get(Host, cell.host_id))
            dst = _agent(svc, s.get(Host, step["host"]))
            tasks_mod.advance(task, COPY_STEP, "STARTED", now, message="copying")
            out.append((task.id, cell.id, src, dst, [volume_engine_name(v.id) for v in vols]))
    return out


def advance(svc: Services, now: datetime) -> set[str]:
    """Copy the volumes of the moves whose cell has stopped; then move the cell (module doc)."""
    topics: set[str] = set()
    for task_id, cell_id, src, dst, names in _plan(svc, now):
        digests: dict[str, str] = {}
        error = None
        if src is None or dst is None:
            error = "a host of the move has no agent endpoint"
        else:
            with agent_tls.sync_client(svc, timeout=COPY_TIMEOUT) as client:
                try:
                    for name in names:
                        digests[name] = copy_volume(client, src, dst, name)
                except CopyFailed as e:
                    error = str(e)
        topics |= _finish(svc, task_id, cell_id, digests, error)
    return topics | _clean(svc, now)


def _clean(svc: Services, now: datetime) -> set[str]:
    """Remove the old copies of verified moves; a copy still in use is tried again next pass."""
    todo: list[tuple[str, str, Agent | None, list[str]]] = []
    with svc.db.reader() as s:
        for task in s.scalars(
            select(Task).where(Task.kind == MOVE_KIND, Task.state.in_(("QUEUED", "STARTED")))
        ):
            step = next((st for st in task.steps if st["name"] == CLEAN_STEP), None)
            copy = _copy_step(task)
            if step is None or copy is None or step["state"] == "COMPLETED":
                continue
            if copy["state"] != "COMPLETED" or not step.get("volumes"):
                continue
            todo.append(
                (task.id, task.entity_id, _agent(svc, s.get(Host, step["from"])), step["volumes"])
            )
    topics: set[str] = set()
    for task_id, cell_id, src, names in todo:
        left: list[str] = []
        why = "the old host has no agent endpoint"
        if src is not None:
            with agent_tls.sync_client(svc, timeout=COPY_TIMEOUT) as client:
                for name in names:
                    failed = _remove_copy(client, src, name)
                    if failed is None:
                        _event(svc, cell_id, f"old copy of {name} removed from {src.name}")
                    else:
                        left.append(name)
                        why = failed
        else:
            left = names
        with svc.db.session() as s:
            row = s.get(Task, task_id)
            if row is None:
                continue
            steps = [dict(st) for st in row.steps]
            for st in steps:
                if st["name"] == CLEAN_STEP:
                    st["volumes"] = left
                    st["message"] = f"waiting: {why}"[:500] if left else "done"
                    if not left:
                        st.update(state="COMPLETED", finished_at=now.isoformat())
                        st["started_at"] = st.get("started_at") or now.isoformat()
            row.steps = steps
            if all(st["state"] == "COMPLETED" for st in steps):
                row.state, row.progress, row.finished_at = "COMPLETED", 100, now
            topics.add(f"task:{row.id}")
    return topics


def _finish(
    svc: Services, task_id: str, cell_id: str, digests: dict[str, str], error: str | None
) -> set[str]:
    from cellplane.services.moves import leave  # the one way a cell leaves its host

    now = utcnow()
    with svc.db.session() as s:
        task = s.get(Task, task_id)
        cell = s.get(Cell, cell_id)
        if task is None or cell is None or cell.host_id is None:
            return set()
        step = _copy_step(task) or {}
        lock_cell_host(s, cell, step.get("host"))  # both hosts' rows first, as reports do
        if cell.host_id is None:
            return set()
        resume = bool(step.get("resume"))
        if error is not None:
            tasks_mod.fail(
                task, f"volume copy failed, the cell stays: {error}", now, step=COPY_STEP
            )
            s.add(CellEvent(cell_id=cell.id, at=now, type="move-failed", message=error[:2000]))
            if resume:
                cell.desired_state = "RUNNING"
                cell.restart_requested_at = now
                cell.host_rev = bump_host(s, cell.host_id)
            return {f"task:{task.id}", f"cell:{cell.id}", f"host:{cell.host_id}"}
        target = s.get(Host, step["host"])
        assert target is not None
        source = leave(s, cell, now)
        for v in s.scalars(select(Volume).where(Volume.host_id == source)):
            if volume_engine_name(v.id) in digests:
                v.host_id = target.id
        cell.host_id = target.id
        cell.host_rev = bump_host(s, target.id)
        cell.state = "SCHEDULED" if resume else "STOPPED"
        cell.desired_state = "RUNNING" if resume else cell.desired_state
        cell.message = None
        sums = ", ".join(f"{n} sha256 {d[:12]}" for n, d in sorted(digests.items()))
        s.add(
            CellEvent(
                cell_id=cell.id,
                at=now,
                type="moved",
                message=f"to {target.name}, volume data copied and verified ({sums}); "
                f"generation {cell.generation}",
            )
        )
        tasks_mod.advance(task, "SCHEDULE", "COMPLETED", now, message=f"on {target.name}")
        task.steps = [
            {**st, "from": source, "volumes": sorted(digests)} if st["name"] == CLEAN_STEP else st
            for st in task.steps
        ]
        if not resume:
            tasks_mod.advance(task, "RUNNING", "COMPLETED", now, message="the cell is stopped")
        return {f"task:{task.id}", f"cell:{cell.id}", f"host:{source}", f"host:{target.id}"}


def _event(svc: Services, cell_id: str, message: str) -> None:
    with svc.db.session() as s:
        if s.get(Cell, cell_id) is not None:
            s.add(
                CellEvent(cell_id=cell_id, at=utcnow(), type="volume-copy-removed", message=message)
            )
