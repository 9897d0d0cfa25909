"""Every refusal is an RFC 9457 problem document, names the field, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cellplane_platform_support import Platform

PROBLEM = "https://cellplane.dev/problems/"
CMD = ["sleep", "3600"]


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


INVALID = [
    ("unknown-image", {"name": "a", "image": "nope"}, "image"),
    ("unknown-flavor", {"name": "a", "image": "host", "command": CMD, "flavor": "HUGE"}, "flavor"),
    ("name-uppercase", {"name": "Web_1", "image": "host", "command": CMD}, "name"),
    ("name-dash-end", {"name": "web-", "image": "host", "command": CMD}, "name"),
    ("name-too-long", {"name": "a" * 64, "image": "host", "command": CMD}, "name"),
    ("name-empty", {"name": "", "image": "host", "command": CMD}, "name"),
    (
        "flavor-and-cpu",
        {"name": "a", "image": "host", "command": CMD, "flavor": "SMALL", "cpu": 1},
        "body",
    ),
    (
        "negative-cpu",
        {"name": "a", "image": "host", "command": CMD, "cpu": -1, "memory_mb": 64},
        "cpu",
    ),
    ("unknown-field", {"name": "a", "image": "host", "command": CMD, "bogus": 1}, "bogus"),
    (
        "port-out-of-range",
        {"name": "a", "image": "host", "command": CMD, "ports": [{"container_port": 0}]},
        "ports[0].container_port",
    ),
    (
        "relative-mount",
        {"name": "a", "image": "host", "command": CMD, "volumes": [{"volume": "v", "path": "d"}]},
        "volumes[0].path",
    ),
    (
        "unknown-volume",
        {"name": "a", "image": "host", "command": CMD, "volumes": [{"volume": "v", "path": "/d"}]},
        "volumes[0].volume",
    ),
    (
        "restart-policy",
        {"name": "a", "image": "host", "command": CMD, "restart": {"policy": "sometimes"}},
        "restart.policy",
    ),
    ("missing-image", {"name": "a"}, "image"),
]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_cell_bodies(plat: Platform, body: dict[str, Any], field: str) -> None:
    before = plat.cell_count()
    r = plat.client.post("/v1/projects/default/cells", json=body, headers=plat.admin)
    p = problem(r, 422, "validation")
    assert p["errors"], p
    assert p["errors"][0]["field"] == field, p["errors"]
    assert p["errors"][0]["message"]
    # The detail names the field, or (a rule across fields) is the message alone; never
    # pydantic's own prefixes.
    assert field in p["detail"] or (field == "body" and p["errors"][0]["message"] == p["detail"])
    assert "Value error" not in p["detail"] and "body:" not in p["detail"]
    assert plat.cell_count() == before


def test_malformed_json(plat: Platform) -> None:
    r = plat.client.post(
        "/v1/projects/default/cells",
        content=b'{"name": "a", ',
        headers={**plat.admin, "Content-Type": "application/json"},
    )
    p = problem(r, 400, "malformed")
    assert "not valid JSON" in p["detail"]
    assert plat.cell_count() == 0


def test_duplicate_name_is_a_conflict(plat: Platform) -> None:
    assert plat.create_cell("web").status_code == 202
    p = problem(plat.create_cell("web"), 409, "conflict")
    assert "web" in p["detail"]
    assert plat.cell_count() == 1


def test_a_cell_bigger_than_any_host(plat: Platform) -> None:
    p = problem(plat.create_cell("big", cpu=1, memory_mb=8192), 409, "insufficient-capacity")
    assert "needs" in p["detail"] and "MB" in p["detail"]
    assert "8192" in p["detail"] and "4096" in p["detail"]
    p = problem(plat.create_cell("wide", cpu=64, memory_mb=64), 409, "insufficient-capacity")
    assert "needs 64 cpu" in p["detail"]
    assert plat.cell_count() == 0


def test_no_host_at_all(bare: Platform) -> None:
    p = problem(bare.create_cell("web"), 409, "insufficient-capacity")
    assert "no hosts" in p["detail"]
    assert bare.cell_count() == 0


def test_unknown_project_and_cell(plat: Platform) -> None:
    r = plat.client.post(
        "/v1/projects/nope/cells", json={"name": "a", "image": "host"}, headers=plat.admin
    )
    assert "nope" in problem(r, 404, "not-found")["detail"]
    problem(plat.client.get("/v1/cells/cel-nope", headers=plat.admin), 404, "not-found")
    problem(plat.client.post("/v1/cells/cel-nope/stop", headers=plat.admin), 404, "not-found")
    problem(plat.client.delete("/v1/cells/cel-nope", headers=plat.admin), 404, "not-found")
    problem(plat.client.get("/v1/tasks/tsk-nope", headers=plat.admin), 404, "not-found")
    problem(plat.client.get("/v1/no/such/route", headers=plat.admin), 404, "not-found")


def test_bad_query_parameters(plat: Platform) -> None:
    r = plat.client.get("/v1/projects/default/cells?label=novalue", headers=plat.admin)
    assert problem(r, 422, "validation")["errors"][0]["field"] == "label"
    r = plat.client.get("/v1/projects/default/cells?limit=0", headers=plat.admin)
    assert problem(r, 422, "validation")["errors"][0]["field"] == "limit"
    r = plat.client.get("/v1/projects/default/cells?cursor=a", headers=plat.admin)
    assert problem(r, 400, "malformed")["errors"][0]["field"] == "cursor"


def test_stop_body_validation(plat: Platform) -> None:
    cid = plat.create_cell("web").json()["entity"]["id"]
    r = plat.client.post(f"/v1/cells/{cid}/stop", json={"timeout": -1}, headers=plat.admin)
    assert problem(r, 422, "validation")["errors"][0]["field"] == "timeout"
    assert plat.cell(cid)["desired_state"] == "RUNNING"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer cpt_wrong"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong-token", "basic", "empty-bearer"],
)
def test_unauthorized(plat: Platform, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/projects/default/cells"),
        ("GET", "/v1/whoami"),
        ("GET", "/v1/hosts"),
        ("POST", "/v1/projects/default/cells"),
    ]:
        kw: dict[str, Any] = {"json": {"name": "a", "image": "host", "command": CMD}}
        r = plat.client.request(method, path, headers=headers, **(kw if method == "POST" else {}))
        problem(r, 401, "unauthorized")
    assert plat.cell_count() == 0


def test_agent_routes_need_the_host_token(plat: Platform) -> None:
    url = f"/v1/agent/hosts/{plat.host_id}/assignments?wait=0"
    problem(plat.client.get(url, headers=plat.admin), 401, "unauthorized")
    problem(plat.client.get(url), 401, "unauthorized")
    _, other_token = plat.register_host("host-2")
    wrong = {"Authorization": f"Bearer {other_token}"}
    problem(plat.client.get(url, headers=wrong), 401, "unauthorized")
    r = plat.client.post(f"/v1/agent/hosts/{plat.host_id}/heartbeat", headers=wrong)
    problem(r, 401, "unauthorized")
    assert plat.client.get(url, headers=plat.agent).status_code == 200
    # The host token is no user credential.
    problem(plat.client.get("/v1/whoami", headers=plat.agent), 401, "unauthorized")


def test_register_with_a_wrong_join_token(plat: Platform) -> None:
    body = {
        "join_token": "cpj_wrong",
        "name": "intruder",
        "capacity": {"cpu": 1, "memory_mb": 1, "disk_gb": 1},
    }
    problem(plat.client.post("/v1/agent/register", json=body), 401, "unauthorized")
    r = plat.client.get("/v1/hosts", headers=plat.admin)
    assert [h["name"] for h in r.json()["items"]] == ["host-1"]
