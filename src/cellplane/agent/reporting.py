"""The agent's side of status reports and heartbeats: a batched outbox and its sender.

A base of `agent.runner.Agent` (kept apart for the runner's size): reports are queued with
`_queue` (deduplicated: a cell's unchanged truth is not sent twice; a transient state is held a
moment, and replaced by what follows it), sent in batches by the report thread, and heartbeats
carry the engine's health while it is down.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from cellplane.agent.server_client import ServerClient, ServerUnavailable
from cellplane.agent.spec import AgentConfig
from cellplane.agent.supervisor import EngineHealth

__all__ = ["Reporter"]

log = structlog.get_logger("cellplane.agent")

#: States a cell only passes through (its container being made, being started). A report of one
#: is held this long before it is sent, and the report that follows within it replaces it: a
#: `docker run` reported CREATING, CREATED, STARTING and RUNNING, four status writes on the
#: server (and four wake-ups of whatever waits on the cell) for what is one start. A slow one
#: (an image to fetch, an engine under load) still shows its transient state, this much later.
TRANSIENT_STATES = frozenset({"CREATING", "STARTING"})
TRANSIENT_HOLD_S = 0.25


class Reporter:
    """Outbox, report loop and heartbeat loop; the agent sets these attributes up."""

    cfg: AgentConfig
    server: ServerClient
    _stop: threading.Event
    _outbox: list[dict[str, Any]]
    _held: dict[str, tuple[float, dict[str, Any]]]
    _outbox_cv: threading.Condition
    _reported: dict[str, tuple[Any, ...]]
    _engine_health: EngineHealth

    def _queue(self, report: dict[str, Any], events: list[dict[str, Any]] | None = None) -> None:
        key = tuple(sorted((k, str(v)) for k, v in report.items() if k != "events"))
        cid = report.get("cell_id", "")
        if not events and self._reported.get(cid) == key:
            return
        self._reported[cid] = key
        if events:
            report = {**report, "events": events}
        passing = report.get("state") in TRANSIENT_STATES and "message" not in report
        with self._outbox_cv:
            if cid and passing and not events:
                self._held[cid] = (time.monotonic() + TRANSIENT_HOLD_S, report)
            else:
                self._held.pop(cid, None)  # what followed within the hold replaces it
                self._outbox.append(report)
            self._outbox_cv.notify()

    # --- reports and heartbeats ---

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            with self._outbox_cv:
                while not self._release_held() and not self._stop.is_set():
                    due = min((at for at, _ in self._held.values()), default=None)
                    left = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
                    self._outbox_cv.wait(left)
            self._flush_reports()

    def _release_held(self) -> bool:
        """Move the held reports whose time came to the outbox (under `_outbox_cv`); whether
        there is anything to send."""
        now = time.monotonic()
        for cid, (at, report) in list(self._held.items()):
            if at <= now:
                del self._held[cid]
                self._outbox.append(report)
        return bool(self._outbox)

    def _flush_reports(self) -> None:
        with self._outbox_cv:
            batch, self._outbox = self._outbox, []
        if not batch:
            return
        delay = 0.2
        while True:
            try:
                self.server.report(batch)
                return
            except ServerUnavailable as e:
                if self._stop.is_set():
                    return
                log.warning("status report deferred", error=str(e))
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception("status report refused")
                # Forget what we think we reported so the next pass re-sends the truth.
                self._reported.clear()
                return

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.cfg.heartbeat_s):
            if not self._engine_health.up:
                self._queue_engine()  # level-triggered: a server that missed it learns again
            try:
                self.server.heartbeat()
            except ServerUnavailable as e:
                log.warning("heartbeat failed", error=str(e))
                self._reported.clear()
            except Exception:
                log.exception("heartbeat refused")

    def _queue_engine(self) -> None:
        self._push({"engine": self._engine_health.report()})

    def _push(self, item: dict[str, Any]) -> None:
        """Send `item` with the next batch, as it is (not deduplicated, not held)."""
        with self._outbox_cv:
            self._outbox.append(item)
            self._outbox_cv.notify()
