"""Deleting a project: refused (409, naming them) while it holds cells, volumes, networks and the
like, with nothing changed; 404 for one that is not there; RBAC as for creating one; once empty,
it goes with its default network, quota and role assignments, and the delete is audited."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import Platform
from sqlalchemy import func, select

from cellplane.state.identity_models import AuditEvent, Quota, RoleAssignment
from cellplane.state.models import Network, Project


def _project_rows(plat: Platform, project_id: str) -> dict[str, int]:
    with plat.svc.db.reader() as s:
        return {
            name: int(s.scalar(select(func.count()).where(col == project_id)) or 0)
            for name, col in (
                ("projects", Project.id),
                ("networks", Network.project_id),
                ("quotas", Quota.project_id),
                ("roles", RoleAssignment.project_id),
            )
        }


def _user(plat: Platform, name: str, role: str, project: str) -> dict[str, str]:
    body: dict[str, Any] = {"name": name, "password": "project-delete-pw-1"}
    assert plat.client.post("/v1/users", json=body, headers=plat.admin).status_code == 201
    grant = {"user": name, "role": role, "project": project}
    r = plat.client.post("/v1/role-assignments", json=grant, headers=plat.admin)
    assert r.status_code == 201, r.text
    r = plat.client.post(
        "/identity/default/token",
        data={
            "grant_type": "password",
            "username": name,
            "password": "project-delete-pw-1",
            "client_id": "cellplane-cli",
        },
        headers={"host": "127.0.0.1"},  # loopback: the issuer takes http
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}", "host": "127.0.0.1"}


def test_a_project_is_deleted_only_once_empty_and_takes_its_bookkeeping(plat: Platform) -> None:
    c, admin = plat.client, plat.admin
    r = c.post("/v1/projects", json={"name": "web"}, headers=admin)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    member = _user(plat, "dev", "project-member", "web")
    assert c.put("/v1/projects/web/quota", json={"cells": 5}, headers=admin).status_code == 200
    assert c.post("/v1/projects/web/volumes", json={"name": "data"}, headers=admin).status_code == (
        201
    )
    r = c.post("/v1/projects/web/networks", json={"name": "back"}, headers=admin)
    assert r.status_code == 201, r.text
    before = _project_rows(plat, pid)
    assert before == {"projects": 1, "networks": 2, "quotas": 1, "roles": 1}

    r = c.delete("/v1/projects/web", headers=member)  # a member may not (projects:write)
    assert r.status_code == 403, r.text
    r = c.delete("/v1/projects/web", headers=admin)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "volumes (data)" in detail and "networks (back)" in detail
    assert "cellplane volume rm" in detail
    assert _project_rows(plat, pid) == before  # refused: nothing changed
    assert c.delete("/v1/projects/nope", headers=admin).status_code == 404
    assert c.delete("/v1/projects/default", headers=admin).status_code == 409

    vol = c.get("/v1/projects/web/volumes", headers=admin).json()["items"][0]
    assert c.delete(f"/v1/volumes/{vol['id']}", headers=admin).status_code in (202, 204)
    assert c.delete("/v1/projects/web/networks/back", headers=admin).status_code == 204
    r = c.delete("/v1/projects/web", headers=admin)
    assert r.status_code == 204, r.text
    assert _project_rows(plat, pid) == {"projects": 0, "networks": 0, "quotas": 0, "roles": 0}
    assert c.delete("/v1/projects/web", headers=admin).status_code == 404
    names = [p["name"] for p in c.get("/v1/projects", headers=admin).json()["items"]]
    assert names == ["default"]
    with plat.svc.db.reader() as s:
        actions = set(s.scalars(select(AuditEvent.action).where(AuditEvent.target == "web")))
    assert "project.delete" in actions


def test_a_project_with_a_cell_names_it(plat: Platform) -> None:
    c, admin = plat.client, plat.admin
    assert c.post("/v1/projects", json={"name": "jobs"}, headers=admin).status_code == 201
    body = {"name": "job", "image": "host", "command": ["sleep", "1"], "cpu": 0.1}
    assert c.post("/v1/projects/jobs/cells", json=body, headers=admin).status_code == 202
    r = c.delete("/v1/projects/jobs", headers=admin)
    assert r.status_code == 409 and "cells (job)" in r.json()["detail"]
