"""The cluster executor against the in-process server, for the executor's unit tests.

Loaded by path and registered as `cellplane_executor_support` (see this folder's conftest). The
executor runs for real (cells, volumes and quotas through the services); a fake agent thread plays
the controller and the host: it schedules pending cells, reports them RUNNING, confirms deleted
cells and volumes. Readiness probes pass at once (the executor's exec is stubbed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import select

from cellplane.controller.clusters import ClusterExecutor
from cellplane.services import hosts as hosts_mod
from cellplane.state.cluster_models import Cluster
from cellplane.state.models import Cell, Volume

__all__ = [
    "Executor",
    "FakeAgent",
    "cells",
    "create",
    "deploy",
    "eventually",
    "group",
    "run",
    "volumes",
]


class Executor(ClusterExecutor):
    def exec(self, ctx: Any, cell_id: str, command: list[str], timeout: float = 30) -> Any:
        return 0, ""  # every readiness probe passes


class FakeAgent:
    """Plays the controller and the host's agent in a thread until stopped."""

    def __init__(self, plat: Platform) -> None:
        self.plat = plat
        self.errors: list[BaseException] = []
        # Cells it does not start (a test sets their state itself); their removal it confirms.
        self.hold: set[str] = set()
        # The hosts it plays (a test adds the others it registers, or takes a lost one away).
        self.hosts: set[str] = {plat.host_id}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-agent", daemon=True)

    def __enter__(self) -> FakeAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # reported by the fixture, not lost in the thread
                self.errors.append(e)
                return
            self._stop.wait(0.02)

    def tick(self) -> None:
        self.plat.schedule()
        for host in sorted(self.hosts):
            self._tick(host)

    def _tick(self, host: str) -> None:
        svc = self.plat.svc
        reports: list[dict[str, Any]] = []
        with svc.db.reader() as s:
            for cell in s.scalars(select(Cell).where(Cell.host_id == host)):
                if cell.desired_state == "DELETED":
                    reports.append({"cell_id": cell.id, "removed": True})
                elif cell.id in self.hold:
                    continue
                elif cell.desired_state == "RUNNING" and cell.state != "RUNNING":
                    reports.append(
                        {"cell_id": cell.id, "state": "RUNNING", "container_id": f"ctr-{cell.id}"}
                    )
            for v in s.scalars(
                select(Volume).where(Volume.host_id == host, Volume.state == "DELETING")
            ):
                reports.append({"volume_removed": v.id})
        if reports:
            hosts_mod.apply_status(svc, host, reports)


def group(name: str, roles: list[str], n: int, size: int = 2) -> dict[str, Any]:
    return {
        "name": name,
        "roles": roles,
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": 256,
        "storage": {"sizeGB": size},
    }


def create(plat: Platform, name: str, *groups: dict[str, Any]) -> Any:
    return plat.client.post(
        "/v1/projects/default/clusters",
        json={"name": name, "spec": {"nodeGroups": list(groups)}},
        headers=plat.admin,
    )


def run(plat: Platform, ex: ClusterExecutor, name: str) -> Cluster | None:
    """Run the cluster's pending operation to its end; the cluster row after it (None: gone)."""
    with plat.svc.db.reader() as s:
        cid = s.scalar(select(Cluster.id).where(Cluster.name == name))
    assert cid is not None
    ex.run_one(cid)
    with plat.svc.db.reader() as s:
        c = s.get(Cluster, cid)
        if c is not None:
            s.expunge(c)
        return c


def deploy(plat: Platform, ex: ClusterExecutor, name: str, *groups: dict[str, Any]) -> Cluster:
    r = create(plat, name, *groups)
    assert r.status_code == 202, r.text
    c = run(plat, ex, name)
    assert c is not None and c.state == "RUNNING", c and c.message
    return c


def volumes(plat: Platform) -> dict[str, Volume]:
    with plat.svc.db.reader() as s:
        rows = s.scalars(select(Volume)).all()
        for v in rows:
            s.expunge(v)
        return {v.name: v for v in rows}


def cells(plat: Platform) -> dict[str, Cell]:
    with plat.svc.db.reader() as s:
        rows = s.scalars(select(Cell)).all()
        for c in rows:
            s.expunge(c)
        return {c.name: c for c in rows}


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
