"""Readiness: probe each role of a node through its host agent until it passes, or fail the node.

Probes and every other command the executor runs in a node's cell (joins, config pushes, log
tails) go through :func:`cellplane.services.agent_proxy.exec_sync`, the path
``POST /v1/cells/{id}/exec`` uses too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from cellplane.clusters.roles import RenderedRole
from cellplane.controller.clusters.records import ExecutorRecords, NodeFailure, OperationContext
from cellplane.controller.clusters.supervisor import probe_command, tail_command
from cellplane.errors import CellplaneError
from cellplane.services import agent_proxy, cell_access

__all__ = ["ExecutorReadiness"]


class ExecutorReadiness(ExecutorRecords):
    """Commands in a node's cell (:meth:`exec`) and the readiness wait built on them."""

    def exec(
        self, ctx: OperationContext, cell_id: str, command: list[str], timeout: float = 30
    ) -> tuple[int, str]:
        """Run `command` in the cell through its host agent: (exit code, output)."""
        target = cell_access.locate(self.svc, ctx.principal, cell_id)
        try:
            data = agent_proxy.exec_sync(self._http, target, command, timeout)
        except agent_proxy.AgentUnreachable as e:
            return 255, f"agent unreachable: {e.cause}"
        except agent_proxy.AgentRefused as e:
            return 255, f"exec failed on the host ({e.agent_status}): {e.text[:300]}"
        return int(data.get("exit_code", 255)), str(data.get("output", ""))

    def _tail(self, ctx: OperationContext, cell_id: str, role: str) -> str:
        with contextlib.suppress(CellplaneError):
            code, out = self.exec(ctx, cell_id, tail_command(role))
            if code == 0:
                return out
        return ""

    # --- readiness ---

    def _wait_ready(
        self,
        ctx: OperationContext,
        cell_id: str,
        name: str,
        renders: Sequence[RenderedRole],
        started: float,
    ) -> None:
        """Probe each role in order until it passes; raise NodeFailure at its deadline."""
        for r in renders:
            if r.readiness is None:
                self._role_state(ctx.cluster_id, name, r.role, "READY")
                self._step(ctx, f"{name}:{r.role}", "COMPLETED")
                continue
            self._step(ctx, f"{name}:{r.role}", "STARTED")
            deadline = max(started, time.monotonic()) + r.readiness.timeout
            argv = probe_command(r.readiness)
            last = ""
            while True:
                try:
                    code, last = self.exec(ctx, cell_id, argv, timeout=max(5.0, r.readiness.period))
                except CellplaneError as e:
                    code, last = 255, str(e)
                if code == 0:
                    break
                if time.monotonic() > deadline:
                    tail = self._tail(ctx, cell_id, r.role)
                    self._role_state(ctx.cluster_id, name, r.role, "FAILED")
                    reason = f"not ready after {r.readiness.timeout:g} s"
                    if last.strip():
                        reason += f" (last probe: {last.strip()[-200:]})"
                    raise NodeFailure(name, r.role, reason, tail)
                time.sleep(r.readiness.period)
            self._role_state(ctx.cluster_id, name, r.role, "READY")
            self._step(ctx, f"{name}:{r.role}", "COMPLETED")
