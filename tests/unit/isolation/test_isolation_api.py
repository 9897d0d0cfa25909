"""Isolation classes through the API, in process (no engine): what a host offers, a cell's class
and its placement, the tenant's and project's minimum and its refusals."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import HOST_CAPACITY, Platform


def _register(plat: Platform, name: str, isolation: list[str] | None) -> str:
    """Register an agent offering `isolation`; the platform then speaks as that host."""
    body: dict[str, Any] = {
        "api_version": "agent/v1",
        "join_token": plat.join_token,
        "name": name,
        "address": "10.0.0.9",
        "capacity": HOST_CAPACITY,
        "isolation_detail": "sandbox: runsc test, platform ptrace" if isolation else None,
    }
    if isolation is not None:
        body["isolation"] = isolation
    r = plat.client.post("/v1/agent/register", json=body)
    assert r.status_code == 200, r.text
    plat.host_id, plat.host_token = str(r.json()["host_id"]), str(r.json()["host_token"])
    return plat.host_id


def _host(plat: Platform, host_id: str) -> dict[str, Any]:
    r = plat.client.get(f"/v1/hosts/{host_id}", headers=plat.admin)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _placed(plat: Platform, name: str, **body: Any) -> dict[str, Any]:
    r = plat.create_cell(name, **body)
    assert r.status_code == 202, r.text
    plat.schedule()
    return plat.cell(str(r.json()["entity"]["id"]))


def _policy(plat: Platform, path: str, isolation: str | None) -> Any:
    return plat.client.patch(path, json={"isolation": isolation}, headers=plat.admin)


def test_an_older_agent_offers_standard_only_and_a_sandbox_cell_is_refused_saying_why(
    plat: Platform,
) -> None:
    assert _host(plat, plat.host_id)["isolation"] == ["standard"]
    r = plat.create_cell("gv", isolation="sandbox")
    assert r.status_code == 409, r.text
    assert "no host offers isolation class sandbox" in r.json()["detail"]
    assert plat.cell_count() == 0  # nothing written


def test_a_sandboxed_cell_goes_to_the_host_offering_it_and_says_its_gaps(plat: Platform) -> None:
    gv = _register(plat, "gv-host", ["standard", "sandbox", "vm"])  # unknown classes dropped
    host = _host(plat, gv)
    assert host["isolation"] == ["standard", "sandbox"]
    assert host["isolation_detail"] == "sandbox: runsc test, platform ptrace"
    cell = _placed(plat, "gv", isolation="sandbox")
    assert cell["host"] == gv and cell["isolation"] == "sandbox"
    notes = [e["message"] for e in cell["events"] if e["type"] == "isolation"]
    assert len(notes) == 1 and "goes through gVisor's gofer" in notes[0]
    # The host's agent is told to run it sandboxed.
    assignment = plat.assignments()
    (only,) = [c for c in assignment["cells"] if c["cell_id"] == cell["id"]]
    assert only["isolation"] == "sandbox"
    assert _placed(plat, "std")["isolation"] == "standard"


def test_an_unknown_class_is_refused_naming_the_field(plat: Platform) -> None:
    r = plat.create_cell("bad", isolation="vm")
    assert r.status_code == 422, r.text
    assert any(e["field"].endswith("isolation") for e in r.json()["errors"]), r.json()
    r = _policy(plat, "/v1/tenants/default", "strong")
    assert r.status_code == 422, r.text
    assert plat.cell_count() == 0


def test_the_tenant_minimum_refuses_weaker_cells_names_the_policy_and_reports_existing_ones(
    plat: Platform,
) -> None:
    _register(plat, "gv-host", ["standard", "sandbox"])
    before = _placed(plat, "before")
    r = _policy(plat, "/v1/tenants/default", "sandbox")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["min_isolation"] == "sandbox"
    assert [c["name"] for c in answer["cells_below_policy"]] == ["before"]
    assert plat.cell(before["id"])["isolation"] == "standard"  # reported, not changed
    shown = plat.client.get("/v1/tenants/default", headers=plat.admin).json()
    assert shown["min_isolation"] == "sandbox"

    r = plat.create_cell("weak", isolation="standard")
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "tenant default requires isolation class sandbox or stronger" in detail, detail
    # No class asked: the policy's.
    assert _placed(plat, "implied")["isolation"] == "sandbox"

    r = _policy(plat, "/v1/tenants/default", "standard")  # lifted
    assert r.status_code == 200 and r.json()["min_isolation"] is None, r.text
    assert plat.create_cell("weak", isolation="standard").status_code == 202


def test_a_project_minimum_binds_its_own_cells_only(plat: Platform) -> None:
    _register(plat, "gv-host", ["standard", "sandbox"])
    r = plat.client.post("/v1/projects", json={"name": "other"}, headers=plat.admin)
    assert r.status_code == 201, r.text
    r = _policy(plat, "/v1/projects/default", "sandbox")
    assert r.status_code == 200, r.text
    assert r.json()["min_isolation"] == "sandbox" and r.json()["cells_below_policy"] == []
    r = plat.create_cell("weak", isolation="standard")
    assert r.status_code == 403 and "project default requires" in r.json()["detail"], r.text
    other = plat.client.post(
        "/v1/projects/other/cells",
        json={"name": "weak", "image": "host", "command": ["true"], "isolation": "standard"},
        headers=plat.admin,
    )
    assert other.status_code == 202, other.text
    r = plat.client.patch("/v1/projects/nosuch", json={"isolation": None}, headers=plat.admin)
    assert r.status_code == 404, r.text
