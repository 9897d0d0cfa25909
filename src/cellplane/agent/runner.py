"""The host agent: joins the server, long-polls its cells, reconciles the engine, reports status.

Threads: one long-polls assignments, one reconciles (woken by new assignments, by finished actions
and by a short timer, so that containers killed or removed behind our back are noticed), a pool
executes actions (creates and starts as many at once as the engine's throughput rewards:
`agent.concurrency`), one sends batched status reports and heartbeats, one runs the cells' health
checks (`agent.health`); with an engine to supervise, one more watches it, restarts it when it
dies and tells the server while it is down (`agent.supervisor`). All it knows comes from the server
or the engine: a restarted agent adopts the running containers. Specs: `agent.spec` (pure); made
on the engine by `agent.prepare`; messages: `wire.agent` models (docs/agent-protocol.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from cellplane.agent.concurrency import ENGINE_WORK, EngineGate
from cellplane.agent.health import HealthChecking
from cellplane.agent.net_ops import NetworkAttach
from cellplane.agent.prepare import LimitsPending, Preparer
from cellplane.agent.reconcile import (
    Action,
    Memory,
    is_ended,
    is_stale,
    observed_state,
    reconcile,
)
from cellplane.agent.server_client import ProtocolMismatch, ServerClient, ServerUnavailable
from cellplane.agent.spec import (
    CELL_LABEL,
    HOST_LABEL,
    PROJECT_LABEL,
    AgentConfig,
    container_name,
    container_spec,
    host_capacity,
    picked_ports,
    stop_timeout,
)
from cellplane.agent.spec import event as _event
from cellplane.agent.supervisor import EngineHealth, EngineSupervisor, SupervisedEngine
from cellplane.drivers.base import ContainerInfo, Driver
from cellplane.drivers.errors import (
    AddressesExhausted,
    ContainerNotFound,
    DriverError,
    TemporaryDriverError,
)
from cellplane.wire import agent_plain as wire

__all__ = [
    "CELL_LABEL",
    "HOST_LABEL",
    "PROJECT_LABEL",
    "Agent",
    "AgentConfig",
    "container_spec",
    "host_capacity",
]

log = structlog.get_logger("cellplane.agent")


class Agent(HealthChecking):
    def __init__(
        self,
        config: AgentConfig,
        driver: Driver,
        server: ServerClient,
        *,
        engine: SupervisedEngine | None = None,
    ) -> None:
        self.cfg = config
        self.driver = driver
        self.server = server
        self.host_id = ""
        self._desired: dict[str, wire.CellAssignment] = {}
        self._volumes: dict[str, wire.VolumeAssignment] = {}
        self._synced = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy: set[str] = set()
        self._observed: dict[str, ContainerInfo] = {}
        self._observed_at: dict[str, float] = {}
        self._orphans: list[ContainerInfo] = []
        self._listed = False
        self._memory = Memory()
        self._reported: dict[str, tuple[Any, ...]] = {}
        self._restarts: dict[str, int] = {}
        self._outbox: list[dict[str, Any]] = []
        self._held: dict[str, tuple[float, dict[str, Any]]] = {}
        self._outbox_cv = threading.Condition()
        self._prep = Preparer.for_agent(driver, server, config)
        self._pool = ThreadPoolExecutor(config.parallelism, thread_name_prefix="cp-action")
        self._gate = EngineGate.for_agent(config.parallelism, config.fixed_parallelism, log.info)
        self._threads: list[threading.Thread] = []
        self.agent_secret = secrets.token_urlsafe(32)
        self.agent_url: str | None = None
        self._engine_health = EngineHealth(True, None, time.time())
        self._supervisor = (
            EngineSupervisor(engine, self._engine_changed) if engine is not None else None
        )
        # Reports that ended a cell (END), re-sent as its truth while it stays ended.
        self._end_reports: dict[str, dict[str, Any]] = {}
        # Fencing: the revision of the last full view of assignments, and the last one reported
        # as acted on (nothing left here that the view does not assign).
        self._full_revision = 0
        self._fenced_sent = 0

    # --- lifecycle ---

    def register(self) -> str:
        body = wire.RegisterRequest(
            api_version=wire.API_VERSION,
            join_token=self.cfg.join_token,
            name=self.cfg.name,
            address=self.cfg.address,
            capacity=host_capacity(self.cfg.data_dir, self.cfg.cpu_ratio, self.cfg.memory_ratio),
            labels=self.cfg.labels,
            zone=self.cfg.zone,
            agent_url=self.agent_url,
            agent_secret=self.agent_secret,
            engine=wire.parse(wire.EngineHealthReport, self._engine_health.report()),
            isolation=self.cfg.isolation,
            isolation_detail=self.cfg.isolation_detail,
        )
        delay = 0.2
        while not self._stop.is_set():
            try:
                self.host_id = self.server.register(body)
                log.info("registered", host_id=self.host_id, name=self.cfg.name)
                return self.host_id
            except ProtocolMismatch as e:
                log.error("the server speaks another agent protocol", error=str(e))
                self._stop.wait(30.0)
            except ServerUnavailable as e:
                log.warning("server unavailable, retrying registration", error=str(e))
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        raise RuntimeError("stopped before registering")

    def start(self) -> None:
        for target, name in (
            (self._poll_loop, "cp-poll"),
            (self._reconcile_loop, "cp-reconcile"),
            (self._report_loop, "cp-report"),
            (self._heartbeat_loop, "cp-heartbeat"),
            (self._health_loop, "cp-health"),
            *([(self._supervise_loop, "cp-engine")] if self._supervisor else []),
            *([(lambda: self._prep.run_overlay(self._stop), "cp-overlay")] * self._prep.on_overlay),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._outbox_cv:
            self._outbox_cv.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for t in self._threads:
            t.join(timeout=5)
        self._flush_reports()

    # --- assignments ---

    def _poll_loop(self) -> None:
        revision = 0
        delay = 0.2
        while not self._stop.is_set():
            try:
                data = self.server.assignments(revision, wait=25.0)
            except ProtocolMismatch as e:
                log.error("the server speaks another agent protocol", error=str(e))
                self._stop.wait(30.0)
                continue
            except ServerUnavailable as e:
                log.warning("assignments unavailable", error=str(e))
                revision = 0  # after an outage, take a full view again
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            except Exception:
                log.exception("assignments failed")
                self._stop.wait(2.0)
                continue
            delay = 0.2
            self._apply_assignments(data)
            revision = data.revision

    def _apply_assignments(self, assigned: wire.Assignments | dict[str, Any]) -> None:
        data = wire.parse(wire.Assignments, assigned)
        with self._lock:
            if data.full:
                self._desired = {c.cell_id: c for c in data.cells}
                self._synced = True
                self._full_revision = data.revision
                # The cached listing sorted containers by the old desired set (an agent that
                # listed before its first assignments took every container for an orphan).
                self._listed = False
            else:
                for c in data.cells:
                    self._desired[c.cell_id] = c
            for c in data.cells:
                # The server's count of restarts survives agent restarts; never go backwards.
                self._restarts[c.cell_id] = max(self._restarts.get(c.cell_id, 0), c.restarts)
            self._volumes = {v.volume_id: v for v in data.volumes}
        self._wake.set()

    # --- reconcile ---

    def _reconcile_loop(self) -> None:
        last_full = 0.0
        list_cost = 0.0
        while not self._stop.is_set():
            # A full engine listing costs O(containers); between listings the cache kept up to
            # date by the actions is enough to act on new assignments at once.
            interval = max(self.cfg.resync_s, 5 * list_cost)
            woken = self._wake.wait(max(0.0, last_full + interval - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            full = not woken or time.monotonic() - last_full >= interval
            try:
                started = time.monotonic()
                self.reconcile_once(full=full)
                if full:
                    last_full = time.monotonic()
                    list_cost = last_full - started
            except TemporaryDriverError as e:
                if self._engine_health.up:  # a known outage is logged once, by the supervisor
                    log.warning("engine unavailable", error=str(e))
                last_full = time.monotonic()
            except Exception:
                log.exception("reconcile failed")
                last_full = time.monotonic()

    def _refresh_observed(self) -> None:
        """Replace the cache with a full listing, keeping entries that actions updated meanwhile."""
        t0 = time.monotonic()
        containers = self.driver.list({HOST_LABEL: self.host_id})
        fresh: dict[str, ContainerInfo] = {}
        orphans: list[ContainerInfo] = []
        with self._lock:
            desired = set(self._desired)
        with self._lock:
            known = dict(self._observed)
            wants_restart = {cid for cid, c in self._desired.items() if c.restart_requested_at}
        for info in containers:
            cid = info.labels.get(CELL_LABEL, "")
            if cid not in desired:
                orphans.append(info)
                continue
            if info.started_at is None:
                # Engine listings carry no start times; keep the one we know for this container,
                # or ask the engine when a restart request must be compared with it.
                old = known.get(cid)
                if old is not None and old.id == info.id and old.started_at:
                    info = dataclasses.replace(info, started_at=old.started_at)
                elif cid in wants_restart:
                    with contextlib.suppress(ContainerNotFound):
                        info = self.driver.inspect(info.id)
            fresh[cid] = info
        with self._lock:
            for cid, at in self._observed_at.items():
                if at >= t0 and cid in self._observed:
                    fresh[cid] = self._observed[cid]
                elif at >= t0:
                    fresh.pop(cid, None)
            self._observed = fresh
            self._orphans = orphans
            self._listed = True
            # Updates older than this listing are in it: keep only the newer ones (bounded).
            self._observed_at = {c: at for c, at in self._observed_at.items() if at >= t0}

    def _set_observed(self, cell_id: str, info: ContainerInfo | None) -> None:
        with self._lock:
            if info is None:
                self._observed.pop(cell_id, None)
            else:
                self._observed[cell_id] = info
            self._observed_at[cell_id] = time.monotonic()

    def reconcile_once(self, *, full: bool = True) -> None:
        if not self._engine_health.up:
            return  # nothing can be done or seen; the engine's return wakes the next pass
        refreshed = full or not self._listed
        if refreshed:
            self._refresh_observed()
        with self._lock:
            desired = dict(self._desired)
            synced = self._synced
            busy = frozenset(self._busy)
            volumes = dict(self._volumes)
            observed = {k: v for k, v in self._observed.items() if k in desired}
            # Restarts counted here are newer than the server's copy in the assignment.
            for cid, cell in desired.items():
                mine = self._restarts.get(cid, 0)
                if mine > cell.restarts:
                    desired[cid] = dataclasses.replace(cell, restarts=mine)
            orphans = list(self._orphans) if refreshed else []
            full_revision = self._full_revision
        actions = reconcile(
            desired, observed, orphans, self._memory, time.time(), full_sync=synced, busy=busy
        )
        if (
            synced
            and refreshed
            and full_revision > self._fenced_sent
            and not orphans
            and not any(is_stale(desired[c], i) for c, i in observed.items())
        ):
            # Nothing runs here that the full view does not assign: the server may count this
            # host READY again after it lost it (services.moves: fencing).
            self._fenced_sent = full_revision
            with self._outbox_cv:
                self._outbox.append({"fenced": full_revision})
                self._outbox_cv.notify()
        for cell_id, cell in desired.items():
            if cell_id in busy or cell.desired_state == "DELETED":
                continue
            self._observe(cell, observed.get(cell_id))
        for a in actions:
            with self._lock:
                if a.cell_id in self._busy:
                    continue
                self._busy.add(a.cell_id)
            run, to = self._run_action, desired.get(a.cell_id)
            self._pool.submit(self._gate.call, run, a, to, gated=a.kind in ENGINE_WORK)
        if synced and full:
            self._collect_volumes(volumes)
            self._prep.collect_unused(desired.values(), self.host_id, self.cfg.network_gc_s)

    def _observe(self, cell: wire.CellAssignment, info: ContainerInfo | None) -> None:
        """Queue a status report for a cell whose observed state changed."""
        if info is None and is_ended(cell, self._memory):
            # Its END report is its truth (the server has it already after an agent restart).
            ended = self._end_reports.get(cell.cell_id)
            if ended is not None:
                self._queue(ended)
            return
        self._queue(self._status(cell, info))

    def _status(self, cell: wire.CellAssignment, info: ContainerInfo | None) -> dict[str, Any]:
        """The status report of a cell as `info` shows it: the same for the same container, so
        the next pass's report of a state an action just reported is not sent again."""
        state = observed_state(cell, info)
        report: dict[str, Any] = {
            "cell_id": cell.cell_id,
            "state": state,
            "generation": cell.generation,
        }
        if info is None and state == "CREATING" and cell.pending_volumes:
            report["message"] = self._prep.waiting_for(cell)
        if info is not None:
            report.update(
                container_id=info.id,
                exit_code=info.exit_code if not info.running else None,
            )
            # The address on its first network (the engine lists its networks by name).
            address = info.addresses.get(cell.network.name) or info.address
            if info.running and address:
                report["address"] = address
            if info.running and info.addresses:
                report["addresses"] = dict(sorted(info.addresses.items()))
            if info.running and (picked := picked_ports(cell, info)):
                report["ports"] = picked
        report["restarts"] = self._restarts.get(cell.cell_id, 0)
        return report

    def _collect_volumes(self, volumes: dict[str, wire.VolumeAssignment]) -> None:
        for vid, v in volumes.items():
            if v.state != "DELETING":
                continue
            try:
                self.driver.remove_volume(v.engine_name)
            except DriverError as e:
                log.warning("volume removal failed", volume=vid, error=str(e))
                continue
            self._prep.forget_volume(v.engine_name)
            with self._lock:
                self._volumes.pop(vid, None)
            with self._outbox_cv:
                self._outbox.append({"volume_removed": vid})
                self._outbox_cv.notify()

    # --- actions ---

    def _run_action(self, action: Action, cell: wire.CellAssignment | None) -> None:
        events: list[dict[str, Any]] = []
        try:
            if action.kind == "REMOVE_ORPHAN":
                self._prep.remove(action.container_id)
                with self._lock:
                    self._orphans = [o for o in self._orphans if o.id != action.container_id]
                    old = self._observed.get(action.cell_id)
                    # A stale generation's container: the cell is created anew once it is gone.
                    if old is not None and old.id == action.container_id:
                        self._observed.pop(action.cell_id, None)
                    self._listed = False  # confirm on a fresh listing (and report fencing)
                log.info("removed container", container=action.container_id, reason=action.reason)
                return
            assert cell is not None
            if action.kind == "END":
                self._end(action, cell)
                return
            if action.kind == "CREATE":
                recreated = action.reason == "recreated"
                latest = lambda c: self._desired.get(c)  # noqa: E731 (read when asked)
                self._prep.create(cell, self.host_id, events, recreated=recreated, latest=latest)
                if recreated:  # a vanished container counts against the restart policy
                    self._restarts[cell.cell_id] = self._restarts.get(cell.cell_id, 0) + 1
            elif action.kind == "START":
                self._prep.start(cell, self._cid(action))
                if action.reason.startswith("restarted"):
                    self._restarts[cell.cell_id] = self._restarts.get(cell.cell_id, 0) + 1
                    events.append(_event("restarted", action.reason))
                else:
                    events.append(_event("started", ""))
            elif action.kind == "RESTART":
                self.driver.stop(self._cid(action), stop_timeout(cell))
                self._prep.start(cell, self._cid(action))
                events.append(_event("started", "restarted on request"))
            elif action.kind == "LIMIT":
                self._prep.limit(cell, self._cid(action))
            elif action.kind == "STOP":
                self.driver.stop(self._cid(action), stop_timeout(cell))
                events.append(_event("stopped", "stopped on request"))
            elif action.kind == "REMOVE":
                # No id (a listing missed it): found by name; done once the engine has it gone.
                target = action.container_id or container_name(action.cell_id)
                try:
                    self.driver.stop(target, stop_timeout(cell))
                    events.append(_event("stopped", "stopping for deletion"))
                    self._prep.remove(target)
                except ContainerNotFound:
                    pass
                self._prep.confirm_gone(action.cell_id, action.container_id)
                self._queue(
                    {"cell_id": action.cell_id, "removed": True}, [*events, _event("removed", "")]
                )
                with self._lock:
                    gone = self._desired.get(action.cell_id)
                    deleted = gone is None or gone.desired_state == "DELETED"
                    if gone is not None and deleted:
                        del self._desired[action.cell_id]
                self._reported.pop(action.cell_id, None)
                self._end_reports.pop(action.cell_id, None)
                if deleted:  # gone from this host for good: nothing of it is kept
                    self._restarts.pop(action.cell_id, None)
                    self._memory.forget(action.cell_id)
                else:
                    self._memory.seen_container.discard(action.cell_id)
                    self._memory.ended.pop(action.cell_id, None)
                self._set_observed(action.cell_id, None)
                return
            info = self.driver.inspect(
                self._cid(action) if action.container_id else container_name(action.cell_id)
            )
            self._set_observed(action.cell_id, info)
            self._memory.action_succeeded(action.cell_id)
            self._memory.unlimited.pop(action.cell_id, None)
            self._memory.seen_container.add(action.cell_id)
            self._memory.last_running[action.cell_id] = info.running
            self._observe_with_events(cell, info, events)
        except TemporaryDriverError as e:
            if isinstance(e, LimitsPending):
                self._memory.unlimited[action.cell_id] = e.container_id
            if not self._engine_health.up:
                # The engine is known to be down: retried as soon as it is back, not a failure.
                self._memory.retry_at[action.cell_id] = time.time() + 1.0
                return
            retry = self._memory.action_failed(action.cell_id, time.time())
            log.warning(
                "action deferred",
                action=action.kind,
                cell=action.cell_id,
                error=str(e),
                retry_in=round(retry - time.time(), 2),
            )
            # Retried with backoff, but never in silence: the cell carries the engine's answer at
            # once; it is FAILED when no address is free (nothing changes until one is) or after 3.
            final = self._memory.action_failures.get(action.cell_id, 0) >= 3
            self._failed(cell, events, str(e), final or isinstance(e, AddressesExhausted))
        except DriverError as e:
            self._memory.action_failed(action.cell_id, time.time())
            log.warning("action failed", action=action.kind, cell=action.cell_id, error=str(e))
            self._failed(cell, events, str(e))
        except Exception as e:
            self._memory.action_failed(action.cell_id, time.time())
            log.exception("action crashed", action=action.kind, cell=action.cell_id)
            self._failed(cell, events, str(e))
        finally:
            with self._lock:
                self._busy.discard(action.cell_id)
            self._wake.set()

    def _failed(
        self, cell: wire.CellAssignment | None, events: list[Any], why: str, end: bool = True
    ) -> None:
        """Report an action's failure: the cell FAILED, or (`end` False) still on its way."""
        if cell is not None:
            state = {"state": "FAILED"} if end else {}
            kind, text = ("failed", why) if end else ("retrying", f"{why} (retrying)")
            self._queue(
                {"cell_id": cell.cell_id, **state, "message": text}, [*events, _event(kind, why)]
            )

    @staticmethod
    def _cid(action: Action) -> str:
        assert action.container_id is not None
        return action.container_id

    def _observe_with_events(
        self, cell: wire.CellAssignment, info: ContainerInfo, events: list[dict[str, Any]]
    ) -> None:
        self._queue(self._status(cell, info), events)

    def _end(self, action: Action, cell: wire.CellAssignment) -> None:
        """The container vanished and the restart policy keeps the cell down: report its end."""
        cell_id = cell.cell_id
        try:
            info = self.driver.inspect(container_name(cell_id))
        except ContainerNotFound:
            info = None
        if info is not None:  # not gone after all (a listing raced a create): look again
            self._set_observed(cell_id, info)
            return
        policy = cell.restart.policy
        why = (
            "restart policy never"
            if policy == "never"
            else f"restart policy {policy}, {self._restarts.get(cell_id, 0)} restarts used"
        )
        message = f"its container was removed outside Cellplane ({why}): the cell ends"
        report: dict[str, Any] = {
            "cell_id": cell_id,
            "state": "EXITED" if action.reason == "exited" else "FAILED",
            "message": message,
            "ended": True,
            "restarts": self._restarts.get(cell_id, 0),
        }
        self._memory.ended[cell_id] = cell.restart_requested_at
        self._memory.action_succeeded(cell_id)
        self._end_reports[cell_id] = report
        self._set_observed(cell_id, None)
        log.info("cell ended: container removed outside Cellplane", cell=cell_id, policy=policy)
        self._queue(report, [_event("container-removed", message)])

    # --- the engine ---

    def _supervise_loop(self) -> None:
        assert self._supervisor is not None
        self._supervisor.run(self._stop)

    @property
    def engine_health(self) -> EngineHealth:
        return self._engine_health

    def _engine_changed(self, health: EngineHealth) -> None:
        """Called by the supervisor when the engine goes down, comes back or restarts."""
        was_up = self._engine_health.up
        self._engine_health = health
        if health.up and not was_up:
            log.info("engine back", restarts=health.restarts)
            with self._lock:
                # Retries waited for the engine, not for a backoff: run them now, on a fresh
                # listing, and re-send every cell's truth.
                self._memory.retry_at.clear()
                self._memory.action_failures.clear()
                self._listed = False
            self._reported.clear()
        elif not health.up and was_up:
            log.warning("engine down", reason=health.message)
        self._queue_engine()
        self._wake.set()

    # --- used by the agent's HTTP endpoint ---

    def network_attach(self) -> NetworkAttach:
        """The endpoint's `docker network connect` handler, on this agent's engine networks."""
        return NetworkAttach(
            self.driver,
            lambda project_id, net: self._prep.ensure_network(project_id, net, self.host_id),
            overlay=self.cfg.overlay,
        )

    def container_for(self, cell_id: str) -> str:
        return container_name(cell_id)
