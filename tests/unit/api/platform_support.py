"""A whole server in-process for unit tests: SQLite in a temp dir, seeded, one registered host.

Loaded by path and registered as `cellplane_platform_support` (see the conftests of
tests/unit/api, services and controller), so every folder imports it the same way whatever
pytest's import mode. Nothing here starts podman or opens a socket: the FastAPI app runs
behind `TestClient`, and tests call `schedule_pending` themselves to play the controller.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from cellplane.api.app import create_app
from cellplane.controller.scheduling import schedule_pending
from cellplane.ids import utcnow
from cellplane.services.bootstrap import seed
from cellplane.services.context import Services
from cellplane.state.db import Database, migrate
from cellplane.state.models import Cell

with warnings.catch_warnings():
    # Starlette 1.x asks for the `httpx2` package; with plain httpx (what is installed) it warns
    # once at import, which pytest's filterwarnings=error would turn into a collection error.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

__all__ = ["Platform", "Template", "event", "make_services", "make_template", "platform"]

HOST_CAPACITY = {"cpu": 8, "memory_mb": 4096, "disk_gb": 100}
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Template:
    """A migrated, seeded database file that each test copies (migrating per test is slow)."""

    path: Path
    admin_token: str
    join_token: str


def make_template(directory: Path) -> Template:
    path = directory / "template.db"
    url = f"sqlite:///{path}"
    migrate(url)
    db = Database(url)
    seeded = seed(Services(db=db, data_dir=directory / "data"))
    db.dispose()  # the last connection closing checkpoints the WAL into the file
    assert seeded.admin_token and seeded.join_token
    return Template(path, seeded.admin_token, seeded.join_token)


def make_services(tmp: Path, template: Template) -> Services:
    """Services on a private copy of the template database, with a data dir under `tmp`."""
    db_path = tmp / "cellplane.db"
    for suffix in ("", "-wal"):
        src = Path(f"{template.path}{suffix}")
        if src.exists():
            shutil.copyfile(src, f"{db_path}{suffix}")
    # No agent heartbeats here: hosts registered by a test must not go SUSPECT or DOWN while a
    # slow test runs (the defaults are 6 s and 10 s); tests that need it age the heartbeat.
    return Services(
        db=Database(f"sqlite:///{db_path}"),
        data_dir=tmp / "data",
        heartbeat_suspect_s=600.0,
        heartbeat_down_s=1200.0,
    )


@dataclass
class Platform:
    svc: Services
    client: TestClient
    admin_token: str
    join_token: str
    host_id: str = ""
    host_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def agent(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.host_token}"}

    # --- developer API ---

    def create_cell(self, name: str, **body: Any) -> Any:
        payload = {"name": name, "image": "host", "command": ["sleep", "3600"], **body}
        return self.client.post("/v1/projects/default/cells", json=payload, headers=self.admin)

    def cell_id(self, name: str) -> str:
        r = self.client.get(f"/v1/projects/default/cells?name={name}", headers=self.admin)
        assert r.status_code == 200, r.text
        (item,) = r.json()["items"]
        return str(item["id"])

    def cell(self, cell_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/cells/{cell_id}", headers=self.admin)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def task(self, task_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/tasks/{task_id}", headers=self.admin)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def cell_count(self) -> int:
        with self.svc.db.reader() as s:
            return int(s.scalar(select(func.count(Cell.id))) or 0)

    # --- controller and agent protocol ---

    def schedule(self) -> set[str]:
        return schedule_pending(self.svc, utcnow())

    def register_host(self, name: str = "host-1", **capacity: Any) -> tuple[str, str]:
        body = {
            "api_version": "agent/v1",
            "join_token": self.join_token,
            "name": name,
            "address": "10.0.0.1",
            "capacity": {**HOST_CAPACITY, **capacity},
        }
        r = self.client.post("/v1/agent/register", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        return str(data["host_id"]), str(data["host_token"])

    def assignments(self, revision: int = 0, wait: float = 0) -> dict[str, Any]:
        r = self.client.get(
            f"/v1/agent/hosts/{self.host_id}/assignments",
            params={"revision": revision, "wait": wait},
            headers=self.agent,
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def report(self, *cells: dict[str, Any]) -> None:
        r = self.client.post(
            f"/v1/agent/hosts/{self.host_id}/status",
            json={"api_version": "agent/v1", "cells": list(cells)},
            headers=self.agent,
        )
        assert r.status_code == 204, r.text

    @contextmanager
    def statements(self) -> Iterator[list[str]]:
        """The SQL statements run on the platform's database inside the block, in order."""
        seen: list[str] = []

        def note(conn: object, cursor: object, statement: str, *args: object) -> None:
            seen.append(statement)

        sa_event.listen(self.svc.db.engine, "before_cursor_execute", note)
        try:
            yield seen
        finally:
            sa_event.remove(self.svc.db.engine, "before_cursor_execute", note)


def event(kind: str, message: str = "") -> dict[str, Any]:
    return {"at": utcnow().isoformat(), "type": kind, "message": message}


@contextmanager
def platform(tmp: Path, template: Template, *, with_host: bool = True) -> Iterator[Platform]:
    svc = make_services(tmp, template)
    app = create_app(svc, run_controllers=False)
    with TestClient(app) as client:
        p = Platform(
            svc=svc, client=client, admin_token=template.admin_token, join_token=template.join_token
        )
        if with_host:
            p.host_id, p.host_token = p.register_host()
        yield p
    svc.db.dispose()
