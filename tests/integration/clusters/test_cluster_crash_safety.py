"""kill -9 of the server and the agent in the middle of a cluster deploy, a resize and a delete.

The `gate` test role holds a node short of ready until a file exists in its cell, so "in the
middle" is a state, not a moment: the node cells are created and running, the operation waits.
Both processes are killed with SIGKILL and started again, then the gate is opened in each
waiting node (`exec touch`): the operation left on the cluster row runs again and completes, and the counts are exact: one cell, one container and
one data volume per node, nothing duplicated or left behind. The delete is killed while its
first node is being removed (the role's process ignores SIGTERM, so a stop takes its full
grace period) and finishes with nothing left.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cellplane.drivers.podman import PodmanDriver
from cellplane.testing.harness import Deployment

from .conftest import Api, small_group

pytestmark = pytest.mark.integration

GROUP = "g"
GATE = "/run/cellplane-gate"


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.3)


def _states(c: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(n["name"], n["state"], n["role_states"], n["message"]) for n in c["nodes"]]


def _kill_both(d: Deployment) -> None:
    d.kill_server()
    d.kill_agent()
    assert d.pids() == []


def _start_both(d: Deployment) -> None:
    d.start_server()
    d.start_agent()


def _counts(api: Api, engine: PodmanDriver, name: str) -> dict[str, Any]:
    """The cluster's node cells (API), their containers (engine), its data volumes (API and
    engine), by node."""
    cells = [
        c
        for c in api.get("/v1/projects/default/cells?limit=1000")["items"]
        if c["name"].startswith(f"{name}-{GROUP}-")
    ]
    volumes = [
        v
        for v in api.get("/v1/projects/default/volumes?limit=1000")["items"]
        if v["name"].startswith(f"{name}-{GROUP}-")
    ]
    return {
        "cells": sorted(c["name"] for c in cells),
        "containers": {
            c["name"]: [x.id for x in engine.list({"cellplane.cell": c["id"]})] for c in cells
        },
        "volumes": sorted(v["name"] for v in volumes),
        "engine_volumes": sum(
            len(engine.list_volumes({"cellplane.volume": v["id"]})) for v in volumes
        ),
    }


def _nodes_running(api: Api, cid: str, n: int) -> dict[str, Any]:
    """Wait until the cluster has `n` nodes, each ready or CONFIGURED: its cell runs and its
    readiness is being probed (the gate is shut)."""

    def check(c: dict[str, Any]) -> bool:
        states = [node["state"] for node in c["nodes"]]
        return (
            len(states) == n
            and set(states) <= {"CONFIGURED", "SERVICE_READY"}
            and "CONFIGURED" in states
        )

    c = api.wait(cid, check, timeout=120)
    assert c["task"]["state"] not in ("COMPLETED", "ERROR"), c  # still in the middle
    return dict(c)


def _exact(counts: dict[str, Any], names: list[str]) -> None:
    assert counts["cells"] == names, counts
    assert all(len(ids) == 1 for ids in counts["containers"].values()), counts
    assert counts["volumes"] == [f"{n}-data" for n in names], counts
    assert counts["engine_volumes"] == len(names), counts


def _touch_gate(api: Api, cell: str) -> bool:
    r = api.post(f"/v1/cells/{cell}/exec", {"command": ["/bin/sh", "-c", f"touch {GATE}"]})
    if r.status_code == 409:  # right after a restart: the agent has not registered again yet
        return False
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    return True


def _open_gate(api: Api, c: dict[str, Any]) -> None:
    """Create the gate file in every node's cell (a cell's file system is its own)."""
    for node in c["nodes"]:
        _until(lambda n=node: _touch_gate(api, n["cell"]), 60, f"exec in {node['name']}")


def test_kill_9_mid_deploy_resize_and_delete(
    deployment: Deployment, api: Api, engine: PodmanDriver
) -> None:
    d = deployment
    name = f"kx{uuid.uuid4().hex[:4]}"
    spec = {
        "nodeGroups": [small_group(GROUP, ["gate"], 2)],
        "configuration": {"gate": {"gate": {"path": GATE}}},
    }
    nodes2 = [f"{name}-{GROUP}-0", f"{name}-{GROUP}-1"]
    nodes3 = [*nodes2, f"{name}-{GROUP}-2"]

    # --- deploy: both nodes created and running, not ready ---
    cid = api.create(name, None, spec)
    c = _nodes_running(api, cid, 2)
    before = _counts(api, engine, name)
    _exact(before, nodes2)
    _kill_both(d)
    _start_both(d)
    _open_gate(api, c)
    c = api.settled(cid, timeout=180)
    assert (c["state"], c["task"]["state"]) == ("RUNNING", "COMPLETED"), c
    assert {n["state"] for n in c["nodes"]} == {"SERVICE_READY"}, _states(c)
    after = _counts(api, engine, name)
    _exact(after, nodes2)
    assert after["containers"] == before["containers"]  # adopted, not made again

    # --- resize 2 -> 3: the new node is created and running, not ready ---
    r = api.post(f"/v1/clusters/{cid}/resize", {"nodeGroup": GROUP, "instanceNum": 3})
    assert r.status_code == 202, r.text
    c = _nodes_running(api, cid, 3)  # the new node's cell has no gate file
    before = _counts(api, engine, name)
    _exact(before, nodes3)
    _kill_both(d)
    _start_both(d)
    _open_gate(api, c)
    c = api.settled(cid, timeout=180)
    assert (c["state"], c["task"]["state"]) == ("RUNNING", "COMPLETED"), c
    assert sorted(n["name"] for n in c["nodes"]) == nodes3
    assert {n["state"] for n in c["nodes"]} == {"SERVICE_READY"}, _states(c)
    after = _counts(api, engine, name)
    _exact(after, nodes3)
    assert after["containers"] == before["containers"]

    # --- delete, killed while its first node is being removed ---
    cells = {n["cell"] for n in c["nodes"]}
    r = api.http.delete(f"/v1/clusters/{cid}")
    assert r.status_code == 202, r.text

    def removing() -> bool:
        states = [api.http.get(f"/v1/cells/{cell}").json().get("state", "GONE") for cell in cells]
        return any(s in ("DELETING", "STOPPING", "GONE") for s in states)

    _until(removing, 60, "the delete to remove a node")
    _kill_both(d)
    _start_both(d)
    _until(lambda: api.http.get(f"/v1/clusters/{cid}").status_code == 404, 180, "deleted")
    after = _counts(api, engine, name)
    assert after == {"cells": [], "containers": {}, "volumes": [], "engine_volumes": 0}
    for cell in cells:
        assert engine.list({"cellplane.cell": cell}) == []
