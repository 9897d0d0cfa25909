"""The agent/v1 contract over HTTP: another version or a malformed body is a 422 naming the
field and changes nothing; the agent's client turns a version refusal into ProtocolMismatch;
cells carry their project's network, and a project's networks go with its tenant."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx
import pytest
from cellplane_platform_support import HOST_CAPACITY, Platform
from sqlalchemy import select

from cellplane.agent.server_client import ProtocolMismatch, ServerClient
from cellplane.state.models import Host, Network, Project
from cellplane.wire import agent as wire

PROBLEM = "https://cellplane.dev/problems/"


def _refused(r: httpx.Response, field: str) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    errors = r.json()["errors"]
    assert field in [e["field"] for e in errors], errors
    return str(next(e["message"] for e in errors if e["field"] == field))


def _register_body(plat: Platform, **extra: Any) -> dict[str, Any]:
    return {
        "api_version": wire.API_VERSION,
        "join_token": plat.join_token,
        "name": "node-v",
        "address": "10.0.0.9",
        "capacity": HOST_CAPACITY,
        **extra,
    }


@pytest.mark.parametrize("version", ["agent/v2", None])
def test_register_of_another_version_is_refused_and_writes_nothing(
    plat: Platform, version: str | None
) -> None:
    r = plat.client.post("/v1/agent/register", json=_register_body(plat, api_version=version))
    message = _refused(r, "api_version")
    assert "agent/v1" in message and "same release" in message
    with plat.svc.db.reader() as s:
        assert s.scalar(select(Host.id).where(Host.name == "node-v")) is None


def test_register_of_this_version_answers_with_it(plat: Platform) -> None:
    r = plat.client.post("/v1/agent/register", json=_register_body(plat))
    assert r.status_code == 200, r.text
    assert r.json()["api_version"] == wire.API_VERSION


def test_heartbeat_of_another_version_is_refused(plat: Platform) -> None:
    url = f"/v1/agent/hosts/{plat.host_id}/heartbeat"
    _refused(
        plat.client.post(url, json={"api_version": "agent/v2"}, headers=plat.agent), "api_version"
    )
    ok = plat.client.post(url, json={"api_version": wire.API_VERSION}, headers=plat.agent)
    assert ok.status_code == 204, ok.text
    assert plat.client.post(url, headers=plat.agent).status_code == 204  # no body: still fine


def test_status_of_another_version_is_refused(plat: Platform) -> None:
    r = plat.client.post(
        f"/v1/agent/hosts/{plat.host_id}/status",
        json={"api_version": "agent/v0", "cells": []},
        headers=plat.agent,
    )
    _refused(r, "api_version")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"cell_id": "cel-x", "exit_code": "seven"}, "cells.0.exit_code"),
        ({"state": "RUNNING"}, "cells.0.cell_id"),
        ({"engine": {"restarts": "many"}}, "cells.0.engine.restarts"),
    ],
)
def test_a_malformed_report_is_refused_naming_the_field(
    plat: Platform, item: dict[str, Any], field: str
) -> None:
    r = plat.client.post(
        f"/v1/agent/hosts/{plat.host_id}/status",
        json={"api_version": wire.API_VERSION, "cells": [item]},
        headers=plat.agent,
    )
    _refused(r, field)


def test_the_agent_client_reports_a_version_refusal_as_a_mismatch() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        body = {"errors": [{"field": "api_version", "message": "this server speaks agent/v2"}]}
        return httpx.Response(422, json=body)

    client = ServerClient("http://server.test")
    client._http = httpx.Client(
        base_url="http://server.test", transport=httpx.MockTransport(server)
    )
    client.host_id = "hst-1"
    with pytest.raises(ProtocolMismatch):
        client.heartbeat()


def test_the_agent_client_refuses_assignments_of_another_version() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"api_version": "agent/v2", "revision": 1})

    client = ServerClient("http://server.test")
    client._http = httpx.Client(
        base_url="http://server.test", transport=httpx.MockTransport(server)
    )
    client.host_id = "hst-1"
    with pytest.raises(ProtocolMismatch):
        client.assignments(0, wait=0)


def test_a_cell_is_assigned_its_projects_network(plat: Platform) -> None:
    r = plat.create_cell("web")
    assert r.status_code == 202, r.text
    plat.schedule()
    (cell,) = plat.assignments(0)["cells"]
    with plat.svc.db.reader() as s:
        project_id = s.scalar(select(Project.id).where(Project.name == "default"))
        (net,) = s.execute(
            select(Network.subnet, Network.vni).where(Network.project_id == project_id)
        )
    subnet, vni = net
    # With the overlay's VNI, and the cell's address on it (the first after the gateway).
    address = str(list(ipaddress.ip_network(subnet).hosts())[1])
    assert cell["network"] == {
        "name": f"cp-{project_id}",
        "subnet": subnet,
        "driver": "bridge",
        "vni": vni,
        "address": address,
    }


def test_each_project_has_its_own_subnet_and_they_go_with_the_tenant(plat: Platform) -> None:
    r = plat.client.post("/v1/tenants", json={"name": "acme"}, headers=plat.admin)
    assert r.status_code == 201, r.text
    with plat.svc.db.reader() as s:
        subnets = list(s.scalars(select(Network.subnet)))
        assert len(subnets) == len(set(subnets)) == s.query(Project).count() >= 2
    r = plat.client.delete("/v1/tenants/acme", headers=plat.admin)
    assert r.status_code in (200, 204), r.text
    with plat.svc.db.reader() as s:
        projects = set(s.scalars(select(Project.id)))
        assert {n.project_id for n in s.scalars(select(Network))} == projects
        assert len(projects) == len(subnets) - 1
