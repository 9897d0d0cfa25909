"""A burst in one project: more cells than a /24 holds, all RUNNING, on the project's network;
and a network that is full says so on the cell (the engine's IPAM error), never a silent wait.

A project's network is sized for its cell quota (`state.networks`): a project without one, or
with one above 253 cells, no longer stops at 253 running cells on a host with the rest left
STARTING. 300 tiny cells (busybox sleep that ends on SIGTERM, cpu 0.01, 8 MB) are created through the API under a
project quota that allows them, and every one runs with its own address in the one network.
"""

from __future__ import annotations

import ipaddress
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from cellplane.client import Client
from cellplane.drivers.base import NetworkSpec

from .conftest import IMAGE, SLEEP, Cells, finish, wait_for

# Creating them takes about a minute on two cores; deleting them about as long again.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

CELLS = 300


def test_three_hundred_cells_run_in_one_project(cells: Cells, client: Client) -> None:
    project = client.create_project(f"burst-{uuid.uuid4().hex[:6]}")
    client.set_project_quota(project["name"], {"cells": CELLS, "cpu": 4, "memory_mb": 4096})

    def submit(k: int) -> str:
        task = client.create_cell(
            project["name"], f"b{k:03d}", IMAGE, cpu=0.01, memory_mb=8, command=SLEEP
        )
        return str(task["entity"]["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(submit, range(CELLS)))
    cells.created.extend(ids)

    def all_running() -> list[dict[str, object]] | None:
        got = list(client.iter_cells(project["name"]))
        states: dict[str, int] = {}
        for c in got:
            states[str(c["state"])] = states.get(str(c["state"]), 0) + 1
        if states.get("RUNNING", 0) == CELLS:
            return got
        failed = [c for c in got if c["state"] == "FAILED"]
        assert not failed, f"{len(failed)} FAILED, e.g. {failed[0].get('message')}; {states}"
        return None

    running = wait_for(all_running, timeout=600, interval=5, what=f"{CELLS} cells RUNNING")
    (subnet,) = cells.engine._network_subnets(f"cp-{project['id']}") or []
    net = ipaddress.ip_network(subnet)
    assert net.prefixlen == 23  # sized for the project's quota of 300 cells: 509 addresses
    addresses = [ipaddress.ip_address(str(c["address"])) for c in running]
    assert len(set(addresses)) == CELLS and all(a in net for a in addresses)


def test_a_full_network_fails_the_cell_with_the_ipam_error(cells: Cells, client: Client) -> None:
    project = client.create_project(f"full-{uuid.uuid4().hex[:6]}")
    name = str(project["name"])
    client.set_project_quota(name, {"cells": 10})  # its network: a /24, unused so far
    # The engine already has the project's network, and it is tiny: a /29 holds five containers
    # (the agent adopts an existing network of that name that no /24 must replace).
    network = f"cp-{project['id']}"
    cells.engine.ensure_network(NetworkSpec(network, subnet="10.251.9.0/29"))
    try:
        for k in range(5):
            cells.run(f"fill{k}", project=name)
        cell_id, task = cells.submit("over", project=name)
        failed = cells.wait_state(cell_id, "FAILED")
        assert failed["message"].startswith(f"IPAM: no free address in {network} ("), failed
        assert "failed to find free IP" in failed["message"]
        events = [e for e in failed["events"] if e["type"] == "failed"]
        assert events and events[0]["message"].startswith(f"IPAM: no free address in {network}")
        done = finish(client, task["id"])
        assert done["state"] == "ERROR" and "IPAM: no free address" in str(done), done
    finally:
        cells.cleanup()
        cells.engine.remove_network(network)
