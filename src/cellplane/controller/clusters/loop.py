"""The cluster executor's loop: run every cluster's pending operation in a worker thread.

Started in the server process by :mod:`cellplane.controller.runtime` (next to the placement
loop). :mod:`cellplane.services.clusters` writes an operation (CREATE, RESUME, DELETE, STOP,
START, RESIZE, CONFIG) and a task on the cluster row and publishes the ``clusters`` topic; this
loop picks it up and runs it in a worker thread, one operation per cluster at a time. Every step
is idempotent: after a server restart the operation still on the row runs again and skips what
is already done (a node that is SERVICE_READY with a running cell is left alone). Each pass
(every `tick` seconds, or sooner when a cluster changes) also runs the health pass
(:mod:`.health`), which starts a HEAL for a running cluster whose node was lost, and the leader
pass (:mod:`.leaders`), which follows the leader of roles that elect one.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import structlog
from sqlalchemy import select

from cellplane.controller.clusters.leaders import ExecutorLeaders
from cellplane.services.clusters import CLUSTERS_TOPIC
from cellplane.services.context import Services
from cellplane.state.cluster_models import Cluster

__all__ = ["ClusterExecutor", "run_cluster_executor"]

# The name it had before the executor moved out of cellplane.clusters: log queries keep working.
log = structlog.get_logger("cellplane.clusters.executor")


class ClusterExecutor(ExecutorLeaders):
    """Runs cluster operations; one instance per server process."""

    def pending(self) -> list[str]:
        with self.svc.db.reader() as s:
            ids = s.scalars(select(Cluster.id).where(Cluster.operation.is_not(None))).all()
        with self._lock:
            return [i for i in ids if i not in self._running]

    def claim(self, cluster_id: str) -> bool:
        with self._lock:
            if cluster_id in self._running:
                return False
            self._running.add(cluster_id)
            return True

    def release(self, cluster_id: str) -> None:
        with self._lock:
            self._running.discard(cluster_id)

    def run_one(self, cluster_id: str) -> None:
        """Run the cluster's pending operation to its end (or its failure)."""
        try:
            self._run(cluster_id)
        except Exception as exc:
            log.exception("cluster operation failed", cluster=cluster_id)
            self._finish(cluster_id, error=f"internal error: {exc}")
        finally:
            self.release(cluster_id)


async def run_cluster_executor(svc: Services, *, tick: float = 5.0) -> None:
    """The server's background loop: run every cluster's pending operation in a worker thread.

    Workers are daemon threads: a server stopping mid-operation leaves the operation on the
    cluster row, and the next server process runs it again from where the state says it is.
    """
    executor = ClusterExecutor(svc)
    try:
        while True:
            seen = svc.notifier.version(CLUSTERS_TOPIC)
            try:
                # Lost nodes first: a HEAL it starts is pending right away.
                await asyncio.to_thread(executor.check_health)
                await asyncio.to_thread(executor.track_leaders)
                pending = await asyncio.to_thread(executor.pending)
            except Exception:
                log.exception("cluster executor pass failed")
                pending = []
            for cluster_id in pending:
                if executor.claim(cluster_id):
                    # In the loop's context: a leader's fence (state.leadership) goes along.
                    threading.Thread(
                        target=contextvars.copy_context().run,
                        args=(executor.run_one, cluster_id),
                        name=f"cp-cluster-{cluster_id}",
                        daemon=True,
                    ).start()
            await svc.notifier.wait(CLUSTERS_TOPIC, seen, tick)
    finally:
        executor.close()
