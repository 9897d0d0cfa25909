"""Hosts: registration and the agent protocol (assignments, status), capacity snapshots, maintenance.

Called by the host and agent routes, by the cell service (admission) and by the controller
(scheduling). The agent protocol is level-triggered: an assignment is the full desired state of each
changed cell, and a status report is the full observed state of each changed cell.

A host's state comes from its heartbeats and from its engine's health, which the agent reports in
its status batches (`{"engine": {...}}` items): a host whose engine is down is SUSPECT (it takes no
new cells; its running cells are left alone) and says why in `state_reason`. Reports are merged by
`merge_report`: a report never erases a failure with "no news".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

import structlog
from pydantic import BaseModel
from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from cellplane.errors import FieldError, NotFound, Unauthorized, ValidationFailed
from cellplane.ids import new_id, utcnow
from cellplane.sealing import AGENT_SECRET_COLUMN
from cellplane.services import cell_networks, host_assignments, host_join
from cellplane.services import tasks as tasks_mod
from cellplane.services.context import Principal, Services
from cellplane.services.host_assignments import network_name, volume_engine_name
from cellplane.services.host_views import (
    get_host,
    host_state,
    host_status,
    isolation_offered,
    list_hosts,
    snapshot,
    usage_by_host,
)
from cellplane.state.conflicts import lock_hosts, retry_conflicts
from cellplane.state.models import Cell, CellEvent, Host, Task, Volume
from cellplane.wire import agent as wire

log = structlog.get_logger("cellplane.hosts")

__all__ = [
    "JOIN_TOKEN_KEY",
    "apply_status",
    "assignments",
    "assignments_answer",
    "authenticate_host",
    "authenticated_revision",
    "get_host",
    "host_state",
    "host_status",
    "list_hosts",
    "merge_report",
    "network_description",
    "network_name",
    "parse_status",
    "register",
    "set_maintenance",
    "snapshot",
    "usage_by_host",
    "volume_engine_name",
]

JOIN_TOKEN_KEY = "join_token_sha256"


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def set_maintenance(svc: Services, host_id: str, enabled: bool) -> dict[str, Any]:
    with svc.db.session() as s:
        h = s.get(Host, host_id) or s.scalar(select(Host).where(Host.name == host_id))
        if h is None:
            raise NotFound(f"host {host_id!r} does not exist")
        h.maintenance = enabled
    svc.notifier.publish("controller")
    return get_host(svc, h.id)


# --- agent protocol -------------------------------------------------------------------------


def register(
    svc: Services, body: dict[str, Any] | wire.RegisterRequest, cert_host: str | None = None
) -> wire.RegisterAnswer:
    """Admit an agent presenting a join token (`services.host_join`), or the host certificate
    of the host it names (``cert_host``: the id of the host whose certificate the caller
    presented, checked by the API); the same host name keeps its id.

    With a ``csr`` (CN: the host name) the answer carries a host ``certificate`` and its
    ``certificate_chain`` from the deployment CA and no host token (``""``): the agent
    authenticates with the certificate from then on (mutual TLS). Without one (an agent of a
    plain-HTTP server), a bearer host token as before.

    The join token is checked before the body is read as a `wire.RegisterRequest`: a caller
    without it learns nothing, not even what is missing or which protocol version is spoken.
    """
    raw = body.model_dump() if isinstance(body, wire.RegisterRequest) else body
    token = str(raw.get("join_token") or "") if isinstance(raw, dict) else ""
    named = str(raw.get("name") or "") if isinstance(raw, dict) else ""
    with svc.db.reader() as s:
        host_join.admit(s, token, cert_host, named, consume=False, now=utcnow())
    req = _parse(wire.RegisterRequest, body)
    name = req.name
    if not name:
        raise ValidationFailed.field("name", "required")
    if req.capacity is None:
        raise ValidationFailed.field("capacity", "needs cpu, memory_mb and disk_gb")
    cpu, mem, disk = req.capacity.cpu, req.capacity.memory_mb, req.capacity.disk_gb
    now = utcnow()
    host_token = secrets.token_urlsafe(32)
    with svc.db.session() as s:
        by_token = host_join.admit(s, token, cert_host, name, consume=True, now=now)
        h = s.scalar(select(Host).where(Host.name == name))
        if h is None:
            h = Host(id=new_id("hst"), name=name, created_at=now, state="READY", revision=1)
            s.add(h)
        if by_token:
            h.revoked_at = None  # a revoked host comes back only this way
        # Revision 0 means "nothing seen yet" to agents: a host's revision is always above it.
        h.revision = max(h.revision or 0, 1)
        h.address = req.address or "127.0.0.1"
        h.agent_url = req.agent_url
        h.agent_secret = (
            svc.sealer.seal(req.agent_secret, AGENT_SECRET_COLUMN) if req.agent_secret else None
        )
        h.token_hash = _sha(host_token)
        h.labels = dict(req.labels)
        h.zone = req.zone
        h.cpu, h.memory_mb, h.disk_gb = cpu, mem, disk
        h.cpu_cores, h.cpu_ratio = req.capacity.cores, req.capacity.cpu_ratio
        h.isolation = isolation_offered(req.isolation)
        h.isolation_detail = req.isolation_detail
        h.last_heartbeat = now
        # An agent registers once its engine runs (it starts the engine first).
        _apply_engine(h, req.engine or wire.EngineHealthReport(state="UP"), now)
        host_id = h.id
        cert = None
        if req.csr is not None:
            from cellplane.identity import pki  # only for agents that ask for a certificate

            cert = pki.issue_host_certificate(svc, s, host_id, name, req.csr, addresses=[h.address])
            h.cert_sha256 = host_join.fingerprint(cert["certificate"])
            h.cert_pem = cert["certificate"]
            host_token = ""  # mutual TLS from now on: no bearer credential for this host
            h.token_hash = _sha(secrets.token_urlsafe(32))
    svc.host_tokens.forget(host_id)  # its earlier token no longer beats through this process
    svc.notifier.publish("controller")
    return wire.RegisterAnswer(
        api_version=wire.API_VERSION,
        host_id=host_id,
        host_token=host_token,
        certificate=cert["certificate"] if cert is not None else None,
        certificate_chain=cert["chain"] if cert is not None else None,
    )


_M = TypeVar("_M", bound=BaseModel)


def _report_item(
    r: Any,
) -> wire.CellReport | wire.VolumeRemoved | wire.EngineItem | wire.FenceReport:
    try:
        return wire.report_item(r)
    except wire.ProtocolError as e:
        raise ValidationFailed([FieldError(f, m) for f, m in e.problems]) from None


def _parse(model: type[_M], body: Any) -> _M:
    """An agent's message as `model`; a 422 problem naming each wrong field otherwise."""
    try:
        return wire.parse(model, body)
    except wire.ProtocolError as e:
        raise ValidationFailed([FieldError(f, m) for f, m in e.problems]) from None


def parse_status(
    body: Any,
) -> list[wire.CellReport | wire.VolumeRemoved | wire.EngineItem | wire.FenceReport]:
    """A status body (`wire.StatusReport`) as its items; 422 naming the wrong fields."""
    return list(_parse(wire.StatusReport, body).cells)


def check_heartbeat(body: Any) -> None:
    """A heartbeat body must speak this version (an empty body is an agent before versions)."""
    _parse(wire.Heartbeat, body or {})


def authenticate_host(svc: Services, host_id: str, token: str) -> Principal:
    authenticated_revision(svc, host_id, token)
    return Principal(subject=host_id, tenant_id="", tenant="", roles=("agent",), kind="agent")


def authenticated_revision(svc: Services, host_id: str, token: str | None) -> int:
    """The host's revision, its token checked first (None: the caller checked its certificate).
    One read of two columns: every agent request makes it (a long poll wants both). A token
    found good is remembered (`svc.host_tokens`): a heartbeat with it need not read again."""
    with svc.db.reader() as s:
        row = s.execute(
            select(Host.token_hash, Host.revision).where(Host.id == host_id)
        ).one_or_none()
    digest = _sha(token) if token is not None else None
    if digest is not None and (row is None or not hmac.compare_digest(row[0], digest)):
        raise Unauthorized("host credential is not valid")
    if row is None:
        raise NotFound(f"host {host_id!r} does not exist")
    if digest is not None:
        svc.host_tokens.remember(host_id, digest)
    return int(row[1])


def token_remembered(svc: Services, host_id: str, token: str) -> bool:
    """Whether this process checked the host's token against the database lately
    (`services.heartbeats.VerifiedTokens`)."""
    return svc.host_tokens.known(host_id, _sha(token))


def heartbeat(svc: Services, host_id: str, token: str | None = None) -> None:
    """Record a beat (`beat`), and write what it owes now."""
    owed = beat(svc, host_id, token)
    if owed is not None:
        owed.write()


class OwedWrite(NamedTuple):
    """A write a beat owes. It takes the write lock: an async caller runs it in a thread."""

    write: Callable[[], None]
    #: The first beat of a host: written, and a host that does not exist refused, before the
    #: beat is answered. Otherwise a batch, written after the answer (the agent need not wait).
    before_answer: bool


def beat(svc: Services, host_id: str, token: str | None = None) -> OwedWrite | None:
    """Record a beat of a host whose credential was checked: the first one this process sees
    of a host is written at once, later ones in batches (`services.heartbeats`: one transaction
    for the beats of every host, each written only while the host's token is still `token`).
    Returns the write owed now, if any; None when the beat waits in memory."""
    buf = svc.heartbeats
    now = utcnow()
    if not buf.seen(host_id):
        return OwedWrite(lambda: _first_beat(svc, host_id, now), before_answer=True)
    due = buf.record(host_id, now, _sha(token) if token is not None else None)
    if not due:
        return None
    return OwedWrite(lambda: _write_batch(svc, due), before_answer=False)


def _write_batch(svc: Services, due: dict[str, tuple[datetime, str | None]]) -> None:
    # Written after the beat's answer: a failure is logged, not raised into the finished request.
    # The beats still count here (`HeartbeatBuffer.heard`); the next batch carries newer ones.
    try:
        retry_conflicts(lambda: _write_beats(svc, due))
    except Exception as e:  # any database error: this batch is lost, not the server
        log.warning("heartbeats not written", hosts=len(due), error=str(e)[:200])


_HOSTS = cast(Table, Host.__table__)
# Batches may be written out of order (each after its beat's answer): never an older beat.
_LATER = or_(Host.last_heartbeat.is_(None), Host.last_heartbeat < bindparam("b_at"))
_BEAT_CHECKED = (
    update(_HOSTS)
    .where(_LATER, Host.id == bindparam("b_id"), Host.token_hash == bindparam("b_digest"))
    .values(last_heartbeat=bindparam("b_at"))
)
_BEAT = (
    update(_HOSTS)
    .where(_LATER, Host.id == bindparam("b_id"))
    .values(last_heartbeat=bindparam("b_at"))
)


def _write_beats(svc: Services, due: dict[str, tuple[datetime, str | None]]) -> None:
    checked: list[dict[str, Any]] = []
    by_cert: list[dict[str, Any]] = []
    for hid, (at, digest) in sorted(due.items()):
        if digest is None:
            by_cert.append({"b_id": hid, "b_at": at})
        else:
            checked.append({"b_id": hid, "b_at": at, "b_digest": digest})
    with svc.db.session() as s:
        if checked:
            s.execute(_BEAT_CHECKED, checked)
        if by_cert:
            s.execute(_BEAT, by_cert)


def _first_beat(svc: Services, host_id: str, now: datetime) -> None:
    with svc.db.session() as s:
        h = s.get(Host, host_id)
        if h is None:
            raise NotFound(f"host {host_id!r} does not exist")
        was_down = h.last_heartbeat is None
        h.last_heartbeat = now
    svc.heartbeats.written(host_id, now)
    if was_down:
        svc.notifier.publish("controller")


def current_revision(svc: Services, host_id: str) -> int:
    with svc.db.reader() as s:
        h = s.get(Host, host_id)
        if h is None:
            raise NotFound(f"host {host_id!r} does not exist")
        return h.revision


def network_description(project_id: str) -> wire.NetworkDescription:
    """The project's default network as the agent gets it (Network resource: `services.networks`)."""
    return wire.NetworkDescription(name=network_name(project_id))


def assignments(svc: Services, host_id: str, since: int) -> wire.Assignments:
    """Every cell on the host whose desired state changed after revision `since` (all if 0),
    as the typed contract (`assignments_answer` validated: tests and in-process callers)."""
    return wire.Assignments.model_validate(assignments_answer(svc, host_id, since))


def assignments_answer(svc: Services, host_id: str, since: int) -> dict[str, Any]:
    """`assignments` as the JSON the agent gets, built without a model per cell (the long
    poll's answer: `services.host_assignments`).

    Read in one snapshot: a placement committed between the read of the host's volumes and that
    of its cells (the scheduler binds a new volume with its first cell) named the cell without
    its mount, and the agent started its container without the data (a reader is a snapshot)."""
    with svc.db.reader() as s:
        return host_assignments.answer(s, host_id, since, svc.allowed_host_paths)


_EVENT_STEPS = {
    "image-ready": "PREPARE_IMAGE",
    "created": "CREATE",
    "started": "START",
    "stopped": "STOP",
    "removed": "DELETE",
}


def _parse_at(v: Any, default: datetime) -> datetime:
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v)
        except ValueError:
            return default
    return default


def _started_by(task: Task) -> bool:
    """Whether this task already started the container (an older exit is not its outcome)."""
    return any(st["name"] == "START" and st["state"] == "COMPLETED" for st in task.steps)


def _final_exit(cell: Cell) -> bool:
    """Whether an exited cell stays exited under its restart policy."""
    if cell.restart_policy == "always":
        return False
    if cell.restart_policy == "on-failure" and cell.exit_code not in (0, None):
        return cell.max_retries is not None and cell.restarts >= cell.max_retries
    return True


# Reports that only say "still on the way" (no container yet, or one created but not started):
# no news, which never replaces the failure the cell is in; the retry's outcome will.
_WAITING = frozenset({"CREATING", "STARTING"})


def with_picked_ports(stored: list[Any], reported: Sequence[Any]) -> list[Any]:
    """The cell's ports with `picked_port` set, for each that names no host port, to what its
    host's engine picked (`reported`: `PortAssignment`s); a new list (the JSON column changes).
    Ports that name their host port, and malformed stored entries, are kept as they are."""
    picked = {(p.container_port, p.protocol): p.host_port for p in reported if p.host_port}
    out: list[Any] = []
    for port in stored:
        if isinstance(port, dict) and port.get("host_port") is None:
            key = (port.get("container_port"), port.get("protocol", "tcp"))
            if key in picked:
                port = {**port, "picked_port": picked[key]}
        out.append(port)
    return out


def merge_report(
    state: str, message: str | None, report: dict[str, Any] | wire.CellReport
) -> tuple[str, str | None]:
    """The cell's (state, message) after a status report (pure).

    - a FAILED cell stays FAILED, with its message, on a report that brings no news (a waiting
      state and no message of its own): a later pass of the agent must not hide why the cell is
      not running; real news (RUNNING, EXITED, STOPPED, DELETING, a new failure) replaces it;
    - a report with a message sets it; one without keeps the message while the state is the
      same, and clears it when the state moves on (the problem it described is over).
    """
    if isinstance(report, wire.CellReport):
        report = report.model_dump(include=report.model_fields_set)
    new = str(report.get("state") or state)
    if "message" in report:
        return new, report.get("message")
    if state == "FAILED" and new in _WAITING:
        return state, message
    if new == state:
        return new, message
    return new, None


def _apply_engine(host: Host, engine: wire.EngineHealthReport, now: datetime) -> bool:
    """Record the engine health an agent reported; returns whether the engine came back."""
    state = "DOWN" if (engine.state or "UP").upper() == "DOWN" else "UP"
    came_back = host.engine_state == "DOWN" and state == "UP"
    if state != host.engine_state or host.engine_since is None:
        host.engine_since = now
    host.engine_state = state
    if engine.message:
        host.engine_message = engine.message[:2000]
    if came_back:
        host.engine_outages = (host.engine_outages or 0) + 1
    return came_back


def apply_status(
    svc: Services,
    host_id: str,
    reports: Sequence[
        wire.CellReport | wire.VolumeRemoved | wire.EngineItem | wire.FenceReport | dict[str, Any]
    ],
) -> None:
    """Record what the agent observed; advance the tasks; forget cells whose removal is confirmed.

    Items are `wire` report items (dicts, from tests and in-process callers, are read as such).
    Reports of several hosts that arrive together are written in one transaction
    (`services.status_batch`); this returns once this one is written.
    """
    items = [_report_item(r) for r in reports]
    svc.status_reports.submit((host_id, items), lambda batch: _apply_reports(svc, batch))


def _apply_reports(svc: Services, batch: Sequence[tuple[str, list[Any]]]) -> None:
    """Apply the reports of `batch` ((host id, items) each) in one transaction (again after a
    conflict on PostgreSQL)."""
    topics = retry_conflicts(lambda: _write_reports(svc, batch))
    if topics:
        svc.notifier.publish(*topics)


def _write_reports(svc: Services, batch: Sequence[tuple[str, list[Any]]]) -> set[str]:
    now = utcnow()
    topics: set[str] = set()
    with svc.db.session() as s:
        # The hosts' rows first, in id order, as every transaction that writes several hosts
        # locks them (`lock_hosts`): then the cells. Other orders deadlock on PostgreSQL.
        lock_hosts(s, [host_id for host_id, _ in batch])
        # The cells and tasks the reports name, read in a few queries rather than one each
        # (kept alive here: the session's identity map holds them weakly).
        ids = sorted(
            {r.cell_id for _, items in batch for r in items if isinstance(r, wire.CellReport)}
        )
        # The hosts too: a `get` that misses the identity map queries, and flushes first.
        host_rows = s.scalars(select(Host).where(Host.id.in_(sorted({h for h, _ in batch})))).all()
        keep: list[Any] = []
        for k in range(0, len(ids), 500):
            keep += s.scalars(select(Cell).where(Cell.id.in_(ids[k : k + 500]))).all()
        tids = sorted({c.task_id for c in keep if c.task_id})
        for k in range(0, len(tids), 500):
            keep += s.scalars(select(Task).where(Task.id.in_(tids[k : k + 500]))).all()
        # The cells' events are inserted together at the end (no ORM object, no RETURNING of
        # their ids each): three events a cell were most of a batch's flush at 100,000 cells.
        events: list[dict[str, Any]] = []
        removed: set[str] = set()
        for host_id, items in batch:
            _apply_one(s, host_id, items, now, topics, events, removed)
        events = [e for e in events if e["cell_id"] not in removed]
        if events:
            s.execute(insert(CellEvent), events)
        del keep, host_rows
    return topics


def _apply_health(
    cell: Cell, health: wire.HealthReport | None, now: datetime, events: list[dict[str, Any]]
) -> None:
    """Keep the health the agent reports; a new status is an event (`health_status`)."""
    old = (cell.health or {}).get("status")
    cell.health = None if health is None else health.model_dump(mode="json")
    new = None if health is None else health.status
    if new is not None and new != old:
        events.append({"cell_id": cell.id, "at": now, "type": "health_status", "message": new})


def _apply_one(
    s: Session,
    host_id: str,
    items: list[Any],
    now: datetime,
    topics: set[str],
    events: list[dict[str, Any]],
    removed: set[str],
) -> None:
    host = s.get(Host, host_id)
    if host is None:
        raise NotFound(f"host {host_id!r} does not exist")
    host.last_heartbeat = now
    removed_volumes = []
    for r in items:
        if isinstance(r, wire.VolumeRemoved):
            removed_volumes.append(r.volume_removed)
            continue
        if isinstance(r, wire.EngineItem):
            if _apply_engine(host, r.engine, now):
                topics.add("controller")  # it takes cells again: place what waited
            continue
        if isinstance(r, wire.FenceReport):
            if host.fenced_revision < host.fence_revision <= r.fenced:
                topics.add("controller")  # fenced: it takes cells again
            host.fenced_revision = max(host.fenced_revision, r.fenced)
            continue
        sent = r.model_fields_set
        cell = s.get(Cell, r.cell_id)
        if cell is None or cell.host_id != host_id:
            continue
        if r.generation is not None and r.generation < (cell.generation or 1):
            continue  # about a container the cell left behind (it moved since)
        task = s.get(Task, cell.task_id) if cell.task_id else None
        for ev in r.events:
            at = _parse_at(ev.at, now)
            etype = ev.type[:32]
            events.append({"cell_id": cell.id, "at": at, "type": etype, "message": ev.message})
            step = _EVENT_STEPS.get(etype)
            if task is not None and step is not None:
                tasks_mod.advance(task, step, "COMPLETED", at)
        if "health" in sent:
            _apply_health(cell, r.health, now, events)
            if "state" not in sent:  # only its health changed
                topics.add(f"cell:{cell.id}")
                continue
        state, message = merge_report(cell.state, cell.message, r)
        if r.removed:
            if task is not None:
                tasks_mod.advance(task, "DELETE", "COMPLETED", now)
                topics.add(f"task:{task.id}")
            s.delete(cell)
            removed.add(cell.id)
            topics.add(f"cell:{cell.id}")
            continue
        cell.state = state
        if "container_id" in sent:
            cell.container_id = r.container_id
        if "address" in sent:
            cell.address = r.address
        if r.addresses:
            cell_networks.observed(s, cell, r.addresses)
        if r.ports:
            cell.ports = with_picked_ports(cell.ports or [], r.ports)
        if "exit_code" in sent:
            cell.exit_code = r.exit_code
        if "restarts" in sent:
            cell.restarts = int(r.restarts or 0)
        if r.ended:
            cell.ended_at = now
        elif r.container_id:
            cell.ended_at = None  # it runs again
        cell.message = message
        cell.updated_at = now
        if task is not None:
            if state == "FAILED" and cell.desired_state != "DELETED":
                # A report without a message of its own: the cell's (why it failed) names it.
                tasks_mod.fail(task, str(r.message or message or "the cell failed"), now)
            elif state == "RUNNING" and cell.desired_state == "RUNNING":
                tasks_mod.advance(task, "RUNNING", "COMPLETED", now)
            elif (
                state == "EXITED"
                and cell.desired_state == "RUNNING"
                and _started_by(task)
                and _final_exit(cell)
            ):
                # It ran and ended for good: the operation is over, its outcome is the code.
                if cell.exit_code == 0:
                    tasks_mod.advance(
                        task, "RUNNING", "COMPLETED", now, message="exited with code 0"
                    )
                else:
                    tasks_mod.fail(task, f"the cell exited with code {cell.exit_code}", now)
            elif state in ("STOPPED", "EXITED") and cell.desired_state == "STOPPED":
                tasks_mod.advance(task, "STOP", "COMPLETED", now)
            elif state == "CREATED" and cell.desired_state == "CREATED":
                tasks_mod.advance(task, "CREATE", "COMPLETED", now)  # made, as asked
            topics.add(f"task:{task.id}")
        topics.add(f"cell:{cell.id}")
    for vid in removed_volumes:
        v = s.get(Volume, vid)
        if v is not None and v.state == "DELETING":
            s.delete(v)
