"""A service's isolation class, through the API in process (no engine): its cells get it, a
template naming none gets the tenant's or project's minimum, and a policy refuses a weaker
service whole, naming the service and the policy."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import HOST_CAPACITY, Platform
from sqlalchemy import func, select

from cellplane.state.models import Cell
from cellplane.state.service_models import Service

BASE = "/v1/projects/default/services"
TEMPLATE = {"image": "host", "command": ["sleep", "3600"], "cpu": 0.05, "memory_mb": 16}


def _offer_sandbox(plat: Platform) -> None:
    body: dict[str, Any] = {
        "api_version": "agent/v1",
        "join_token": plat.join_token,
        "name": "gv-host",
        "address": "10.0.0.9",
        "capacity": HOST_CAPACITY,
        "isolation": ["standard", "sandbox"],
        "isolation_detail": "sandbox: runsc test, platform ptrace",
    }
    r = plat.client.post("/v1/agent/register", json=body)
    assert r.status_code == 200, r.text
    plat.host_id, plat.host_token = str(r.json()["host_id"]), str(r.json()["host_token"])


def _create(plat: Platform, name: str, instances: int = 2, **template: Any) -> Any:
    body = {"name": name, "template": {**TEMPLATE, **template}, "instances": instances}
    return plat.client.post(BASE, json=body, headers=plat.admin)


def _show(plat: Platform, name: str) -> dict[str, Any]:
    r = plat.client.get(f"{BASE}/{name}", headers=plat.admin)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _cell_classes(plat: Platform, name: str) -> list[str]:
    return [plat.cell(c["id"])["isolation"] for c in _show(plat, name)["cells"]]


def _counts(plat: Platform) -> tuple[int, int]:
    with plat.svc.db.reader() as s:
        return (
            int(s.scalar(select(func.count(Service.id))) or 0),
            int(s.scalar(select(func.count(Cell.id))) or 0),
        )


def _policy(plat: Platform, path: str, isolation: str | None) -> None:
    r = plat.client.patch(path, json={"isolation": isolation}, headers=plat.admin)
    assert r.status_code == 200, r.text


def test_a_sandboxed_service_gives_its_class_to_every_cell(plat: Platform) -> None:
    _offer_sandbox(plat)
    assert _create(plat, "gv", isolation="sandbox").status_code == 202
    shown = _show(plat, "gv")
    assert shown["isolation"] == "sandbox" and shown["template"]["isolation"] == "sandbox"
    assert _cell_classes(plat, "gv") == ["sandbox", "sandbox"]
    # Scaling up makes more of the same class.
    r = plat.client.post(f"{BASE}/gv/scale", json={"instances": 3}, headers=plat.admin)
    assert r.status_code == 202, r.text
    assert _cell_classes(plat, "gv") == ["sandbox"] * 3
    # A service naming no class is standard when no policy binds.
    assert _create(plat, "std").status_code == 202
    assert _show(plat, "std")["isolation"] == "standard"
    assert _cell_classes(plat, "std") == ["standard", "standard"]


def test_a_policy_refuses_a_weaker_service_whole_and_fills_in_a_missing_class(
    plat: Platform,
) -> None:
    _offer_sandbox(plat)
    _policy(plat, "/v1/tenants/default", "sandbox")
    before = _counts(plat)
    for instances in (2, 0):  # refused up front, even with no cell to admit
        r = _create(plat, "weak", instances=instances, isolation="standard")
        assert r.status_code == 403, r.text
        detail = r.json()["detail"]
        assert detail.startswith("service 'weak': tenant default requires isolation class sandbox")
        assert "a standard service is refused" in detail, detail
    assert _counts(plat) == before  # nothing written
    # No class named: the minimum, fixed in the service's template.
    assert _create(plat, "web").status_code == 202
    shown = _show(plat, "web")
    assert shown["isolation"] == "sandbox" and shown["template"]["isolation"] == "sandbox"
    assert _cell_classes(plat, "web") == ["sandbox", "sandbox"]
    # An update to a weaker class is refused and changes nothing.
    r = plat.client.post(
        f"{BASE}/web/update",
        json={"template": {**TEMPLATE, "isolation": "standard"}},
        headers=plat.admin,
    )
    assert r.status_code == 403, r.text
    assert "service 'web': tenant default requires" in r.json()["detail"]
    assert _show(plat, "web")["revision"] == 1


def test_a_project_policy_binds_its_services_and_a_bad_class_is_a_422(plat: Platform) -> None:
    _offer_sandbox(plat)
    _policy(plat, "/v1/projects/default", "sandbox")
    r = _create(plat, "weak", isolation="standard")
    assert r.status_code == 403, r.text
    assert "project default requires isolation class sandbox" in r.json()["detail"]
    before = _counts(plat)
    r = _create(plat, "odd", isolation="vm")
    assert r.status_code == 422, r.text
    assert "isolation" in r.text
    assert _counts(plat) == before
