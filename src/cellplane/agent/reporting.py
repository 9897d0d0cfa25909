"""The agent's side of status reports and heartbeats: a batched outbox and its sender.

A base of `agent.runner.Agent` (kept apart for the runner's size): reports are queued with
`_queue` (deduplicated: a cell's unchanged truth is not sent twice), sent in batches by the
report thread, and heartbeats carry the engine's health while it is down.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from cellplane.agent.server_client import ServerClient, ServerUnavailable
from cellplane.agent.spec import AgentConfig
from cellplane.agent.supervisor import EngineHealth

__all__ = ["Reporter"]

log = structlog.get_logger("cellplane.agent")


class Reporter:
    """Outbox, report loop and heartbeat loop; the agent sets these attributes up."""

    cfg: AgentConfig
    server: ServerClient
    _stop: threading.Event
    _outbox: list[dict[str, Any]]
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
        with self._outbox_cv:
            self._outbox.append(report)
            self._outbox_cv.notify()

    # --- reports and heartbeats ---

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            with self._outbox_cv:
                while not self._outbox and not self._stop.is_set():
                    self._outbox_cv.wait(1.0)
            self._flush_reports()

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
        with self._outbox_cv:
            self._outbox.append({"engine": self._engine_health.report()})
            self._outbox_cv.notify()
