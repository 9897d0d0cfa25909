"""Faults on a host (issue 18), on the session's real deployment.

- kill -9 of the agent's podman service: the agent restarts it (back within 10 s), the running
  containers are adopted with the same ids, a new cell runs;
- a frozen engine (SIGSTOP): the host is SUSPECT, says why, and takes no new cells until the
  engine answers again;
- a cell's FAILED state and message survive the agent's later reports;
- the REMOVE-before-assignments race after an agent restart: a cell is reported deleted only when
  its container is gone.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from cellplane.client import CellplaneError, Client
from cellplane.drivers.engine import PodmanService
from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import Deployment

from .conftest import Cells, engine_pid, wait_for


def _host(client: Client, d: Deployment) -> dict[str, Any]:
    (h,) = [h for h in client.list_hosts()["items"] if h["name"] == d.agent_name]
    return h


@contextmanager
def _fresh_engine(d: Deployment) -> Iterator[PodmanDriver]:
    """A driver with no pooled connection to an engine process that no longer exists."""
    driver = PodmanDriver(d.engine_url)
    try:
        yield driver
    finally:
        driver.close()


@pytest.mark.integration
def test_killed_engine_is_restarted_and_adopts_running_cells(
    deployment: Deployment, cells: Cells, client: Client
) -> None:
    d = deployment
    before = cells.run("survivor")
    outages = _host(client, d)["engine"]["outages"]
    old_pid = engine_pid(d)
    os.kill(old_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    probe = PodmanService(d.engine_dir)

    def back() -> int | None:
        pid = engine_pid(d)
        return pid if pid != old_pid and probe.answers(0.5) else None

    wait_for(back, 10, interval=0.1, what="the agent to restart its engine")
    assert time.monotonic() - killed_at < 10
    with _fresh_engine(d) as engine:
        [info] = engine.list({"cellplane.cell": before["id"]})
        assert info.id == before["container_id"] and info.running, info
    # The server heard of the outage and of the return.
    host = wait_for(
        lambda: (
            (h := _host(client, d))["state"] == "READY" and h["engine"]["outages"] > outages and h
        ),
        10,
        what="host READY with the outage recorded",
    )
    assert host["engine"]["state"] == "UP"
    assert "killed by signal 9" in host["engine"]["message"], host
    after = cells.run("after-restart")
    assert after["state"] == "RUNNING"
    again = client.get_cell(before["id"])
    assert (again["state"], again["container_id"]) == ("RUNNING", before["container_id"])


@pytest.mark.integration
def test_frozen_engine_host_takes_no_new_cells_and_says_why(
    deployment: Deployment, cells: Cells, client: Client
) -> None:
    d = deployment
    running = cells.run("frozen-survivor")
    pid = engine_pid(d)
    os.kill(pid, signal.SIGSTOP)
    try:
        host = wait_for(
            lambda: (h := _host(client, d))["state"] == "SUSPECT" and h,
            15,
            interval=0.1,
            what="host SUSPECT while its engine does not answer",
        )
        assert "container engine down" in host["state_reason"], host
        assert "not answering" in host["state_reason"], host
        assert host["engine"]["state"] == "DOWN"
        shown = client.get_host(host["id"])
        assert shown["state"] == "SUSPECT" and shown["state_reason"] == host["state_reason"]
        with pytest.raises(CellplaneError) as refused:
            cells.submit("refused")
        assert refused.value.status == 409, refused.value
        assert "READY" in str(refused.value), refused.value
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: _host(client, d)["state"] == "READY", 15, what="host READY again")
    assert client.get_cell(running["id"])["state"] == "RUNNING"
    assert cells.run("after-thaw")["state"] == "RUNNING"


@pytest.mark.integration
def test_failed_state_and_message_survive_later_reports(cells: Cells, client: Client) -> None:
    """A cell whose start fails (its host port is taken) stays FAILED with the engine's reason
    through the agent's later passes and retries, and runs once the port is free."""
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("0.0.0.0", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        cell_id, _task = cells.submit(
            "portclash", ports=[{"container_port": 8080, "host_port": port}]
        )
        seen: list[tuple[str, str | None]] = []
        first: dict[str, Any] = {}

        def failed_then_reported_again() -> dict[str, Any] | None:
            c = client.get_cell(cell_id)
            if first or c["state"] == "FAILED":
                seen.append((c["state"], c["message"]))
                first.setdefault("updated_at", c["updated_at"])
            # Every report applied stamps updated_at: a later one arrived after the failure.
            return c if first and c["updated_at"] != first["updated_at"] else None

        cell = wait_for(failed_then_reported_again, 30, interval=0.1, what="a later report")
        assert cell["state"] == "FAILED" and cell["message"], cell
        # Between the first failure and now, later reports never moved it or erased its reason.
        assert seen and all(s == "FAILED" and m for s, m in seen), seen
    cells.wait_state(cell_id, "RUNNING", timeout=60)
    assert client.get_cell(cell_id)["message"] is None


@pytest.mark.integration
def test_deleted_while_the_agent_was_down_is_done_only_when_the_container_is_gone(
    deployment: Deployment, cells: Cells, client: Client
) -> None:
    d = deployment
    ran = cells.run_many([(f"race{i}", None, {}) for i in range(3)])
    ids = [c["id"] for c in ran]
    d.kill_agent()
    for cell_id in ids:
        client.delete_cell(cell_id)
    d.start_agent()
    pending = set(ids)
    with _fresh_engine(d) as engine:

        def all_gone() -> bool:
            for cell_id in list(pending):
                try:
                    client.get_cell(cell_id)
                except CellplaneError as e:
                    if e.status != 404:
                        raise
                    # The API says deleted: the engine must agree at this very moment.
                    left = engine.list({"cellplane.cell": cell_id})
                    assert left == [], f"{cell_id} reported deleted, container still there: {left}"
                    pending.discard(cell_id)
            return not pending

        wait_for(all_gone, 60, interval=0.05, what="deletions confirmed by the engine")
