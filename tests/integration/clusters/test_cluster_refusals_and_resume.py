"""Refusals before anything is created, a role that never becomes ready, and resume."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from .conftest import Api, small_group

pytestmark = pytest.mark.integration


def _cells(api: Api) -> list[str]:
    return [c["name"] for c in api.get("/v1/projects/default/cells?limit=1000")["items"]]


@pytest.mark.parametrize("distro", ["mesos", "kubernetes"])
def test_serengeti_specs_refused_with_nothing_created(api: Api, distro: str) -> None:
    before_cells = _cells(api)
    r = api.post("/v1/projects/default/clusters", {"name": f"s-{distro}", "distro": distro})
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"].endswith(("/conflict", "/insufficient-capacity"))
    if problem["type"].endswith("/conflict"):
        # Debian has neither: every missing binary is named.
        assert "which the image does not have" in problem["detail"]
        if distro == "mesos":
            assert "/usr/sbin/mesos-master" in problem["detail"]
    assert not any(
        c["name"] == f"s-{distro}" for c in api.get("/v1/projects/default/clusters")["items"]
    )
    assert _cells(api) == before_cells


def test_capacity_shortfall_refused(api: Api) -> None:
    spec = {"nodeGroups": [{**small_group("big", ["basic"], 2), "memCapacityMB": 10**7}]}
    r = api.post("/v1/projects/default/clusters", {"name": "big", "spec": spec})
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/insufficient-capacity")
    assert "needs 2 nodes" in r.json()["detail"]
    assert "big-" not in " ".join(_cells(api))


def test_placement_policies_that_cannot_hold_on_one_host_are_reported(api: Api) -> None:
    # instancePerHost=1 with three nodes on one host: placed anyway, and the cluster says so.
    group = small_group("w", ["basic"], 3, placementPolicies={"instancePerHost": 1})
    cid = api.create("iph", None, {"nodeGroups": [group]})
    c = api.settled(cid)
    assert c["state"] == "RUNNING", c["message"]
    (note,) = c["placement_notes"]
    assert "node group w: instancePerHost 1 cannot be honoured" in note
    assert len({n["host"] for n in c["nodes"]}) == 1 and len(c["nodes"]) == 3
    api.delete(cid)


def test_bad_spec_is_a_validation_problem(api: Api) -> None:
    spec = {"nodeGroups": [{"name": "g", "roles": ["basic"], "instanceNum": -1}]}
    r = api.post("/v1/projects/default/clusters", {"name": "bad", "spec": spec})
    assert r.status_code == 422, r.text
    assert any(e["field"].startswith("spec.nodeGroups[0]") for e in r.json()["errors"])


def test_role_never_ready_then_resume(api: Api) -> None:
    marker = Path("/var/tmp") / f"cellplane-canary-{uuid.uuid4().hex[:8]}"
    spec = {
        "nodeGroups": [small_group("good", ["basic"], 1), small_group("canary", ["canary"], 1)],
        "configuration": {"canary": {"marker": {"path": str(marker)}}},
    }
    try:
        cid = api.create("cn", None, spec)
        c = api.settled(cid, timeout=90)
        assert c["state"] == "PROVISION_ERROR"
        assert "node cn-canary-0 role canary" in c["message"]
        assert "canary waiting for" in c["message"]  # the tail of the role's log
        nodes = {n["name"]: n for n in c["nodes"]}
        assert nodes["cn-canary-0"]["state"] == "FAILED"
        assert "canary waiting for" in nodes["cn-canary-0"]["log_tail"]
        good = nodes["cn-good-0"]
        assert good["state"] == "SERVICE_READY"
        good_cell = api.get(f"/v1/cells/{good['cell']}")

        marker.write_text("fixed\n")  # fix the cause
        r = api.post(f"/v1/clusters/{cid}/resume")
        assert r.status_code == 202, r.text
        c = api.settled(cid, timeout=90)
        assert c["state"] == "RUNNING", c["message"]
        nodes = {n["name"]: n for n in c["nodes"]}
        assert nodes["cn-canary-0"]["state"] == "SERVICE_READY"
        after = api.get(f"/v1/cells/{good['cell']}")  # the healthy node was not touched
        assert after["container_id"] == good_cell["container_id"]
        assert after["restarts"] == good_cell["restarts"]

        # stop (reverse order) and start again (dependency order)
        assert api.post(f"/v1/clusters/{cid}/stop").status_code == 202
        c = api.settled(cid)
        assert c["state"] == "STOPPED", c["message"]
        assert {n["state"] for n in c["nodes"]} == {"STOPPED"}
        assert api.post(f"/v1/clusters/{cid}/start").status_code == 202
        c = api.settled(cid)
        assert c["state"] == "RUNNING", c["message"]
        started = time.monotonic()
        api.delete(cid)
        assert time.monotonic() - started < 60
    finally:
        if marker.exists():
            marker.unlink()
        shutil.rmtree(marker, ignore_errors=True)
