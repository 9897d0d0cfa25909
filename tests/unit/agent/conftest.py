"""Fixtures for the agent tests: a FakeDriver, a fake server client, a controllable clock.

`FakeServer` implements the five calls `Agent` makes on `ServerClient` and records what it was
sent; `agent_factory` builds agents on one shared driver (so a test can simulate an agent
restart), and `run_pass` reconciles once and waits for the submitted actions deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cellplane.agent import runner
from cellplane.agent.runner import Agent, AgentConfig
from cellplane.drivers.fake import FakeDriver
from cellplane.wire.agent_plain import RegisterRequest, dump

HOST_ID = "hst-test"


class FakeServer:
    def __init__(self) -> None:
        self.registrations: list[dict[str, Any]] = []
        self.reports: list[list[dict[str, Any]]] = []
        self.heartbeats = 0
        self.downloads: list[tuple[str, Path]] = []
        self.pending: list[dict[str, Any]] = []

    def register(self, body: RegisterRequest) -> str:
        self.registrations.append(dump(body))
        return HOST_ID

    def assignments(self, revision: int, wait: float) -> dict[str, Any]:
        return self.pending.pop(0) if self.pending else {"revision": revision, "cells": []}

    def report(self, cells: list[dict[str, Any]]) -> None:
        self.reports.append([dict(c) for c in cells])

    def heartbeat(self) -> None:
        self.heartbeats += 1

    def download_image(self, image_id: str, dest: Path) -> None:
        self.downloads.append((image_id, dest))
        dest.write_bytes(b"fake image archive")

    # --- what the tests read ---

    def all_reports(self, cell_id: str) -> list[dict[str, Any]]:
        return [r for batch in self.reports for r in batch if r.get("cell_id") == cell_id]

    def last(self, cell_id: str) -> dict[str, Any]:
        reports = self.all_reports(cell_id)
        assert reports, f"nothing reported for {cell_id}"
        return reports[-1]

    def event_types(self, cell_id: str) -> list[str]:
        return [e["type"] for r in self.all_reports(cell_id) for e in r.get("events") or []]


class Clock:
    """Stands in for the `time` module inside `cellplane.agent.runner`.

    `time()` (what reconcile's backoff arithmetic sees) is moved by the test; everything else is
    the real module's, so the runner's monotonic bookkeeping keeps working.
    """

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(runner, "time", c)
    return c


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver()


@pytest.fixture
def agent_factory(
    tmp_path: Path, driver: FakeDriver, server: FakeServer
) -> Iterator[Callable[[], Agent]]:
    made: list[Agent] = []

    def make() -> Agent:
        cfg = AgentConfig(
            server_url="http://server.invalid",
            join_token="cpj_test",
            data_dir=tmp_path,
            name="host-1",
            parallelism=2,
        )
        agent = Agent(cfg, driver, server)  # type: ignore[arg-type]
        agent.register()
        made.append(agent)
        return agent

    yield make
    for a in made:
        a.stop()


def _run_pass(agent: Agent, timeout: float = 5.0) -> None:
    """One reconcile pass; wait until every action it submitted finished; send the reports."""
    agent.reconcile_once()
    deadline = time.monotonic() + timeout
    while True:
        with agent._lock:
            if not agent._busy:
                break
        if time.monotonic() > deadline:
            raise AssertionError(f"actions still running after {timeout}s: {agent._busy}")
        time.sleep(0.002)
    agent._flush_reports()


@pytest.fixture
def run_pass() -> Callable[..., None]:
    return _run_pass
