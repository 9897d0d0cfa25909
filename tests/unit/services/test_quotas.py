"""Tenant and project quotas: the API, the split rule, usage, and admission of cells, volumes and
clusters, against the in-process server (`plat`: seeded default tenant/project, one host)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from cellplane_platform_support import PROBLEM, Platform
from sqlalchemy import func, select

from cellplane.errors import Forbidden, NotFound, QuotaExceeded
from cellplane.ids import new_id, utcnow
from cellplane.scheduler import Resources
from cellplane.services import quotas
from cellplane.services.context import Principal
from cellplane.state.cluster_models import Cluster, ClusterNode
from cellplane.state.identity_models import AuditEvent, Quota
from cellplane.state.models import Cell, Image, Project, Task, Tenant, Volume

TINY: dict[str, Any] = {"cpu": 0.1, "memory_mb": 32}
NO_LIMITS = {r: None for r in quotas.RESOURCES}
ZERO = {"cpu": 0.0, "memory_mb": 0, "disk_gb": 0, "cells": 0, "volumes_gb": 0}


# --- helpers ---


def put(plat: Platform, path: str, body: dict[str, Any]) -> Any:
    return plat.client.put(path, json=body, headers=plat.admin)


def get(plat: Platform, path: str) -> dict[str, Any]:
    r = plat.client.get(path, headers=plat.admin)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def set_project(plat: Platform, project: str = "default", **limits: Any) -> dict[str, Any]:
    r = put(plat, f"/v1/projects/{project}/quota", limits)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def set_tenant(plat: Platform, tenant: str = "default", **limits: Any) -> dict[str, Any]:
    r = put(plat, f"/v1/tenants/{tenant}/quota", limits)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def new_project(plat: Platform, name: str) -> None:
    r = plat.client.post("/v1/projects", json={"name": name}, headers=plat.admin)
    assert r.status_code == 201, r.text


def cell(plat: Platform, name: str, project: str = "default", **body: Any) -> Any:
    payload = {"name": name, "image": "host", "command": ["sleep", "3600"], **TINY, **body}
    return plat.client.post(f"/v1/projects/{project}/cells", json=payload, headers=plat.admin)


def volume(plat: Platform, name: str, size_gb: int, project: str = "default") -> Any:
    return plat.client.post(
        f"/v1/projects/{project}/volumes",
        json={"name": name, "size_gb": size_gb},
        headers=plat.admin,
    )


def refused(r: Any, detail: str) -> None:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["type"].endswith("/quota-exceeded"), body
    assert body["title"] == "Quota exceeded"
    assert body["detail"] == detail


def conflict(r: Any, *fragments: str) -> None:
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["type"].endswith("/conflict"), body
    for f in fragments:
        assert f in body["detail"], body["detail"]


def ids(plat: Platform) -> tuple[str, str]:
    """(default tenant id, default project id)."""
    with plat.svc.db.reader() as s:
        t = s.scalar(select(Tenant).where(Tenant.name == "default"))
        assert t is not None
        p = s.scalar(select(Project).where(Project.tenant_id == t.id, Project.name == "default"))
        assert p is not None
        return t.id, p.id


def counts(plat: Platform) -> tuple[int, int, int]:
    """(cells, volumes, tasks) in the database."""
    with plat.svc.db.reader() as s:
        return (
            int(s.scalar(select(func.count(Cell.id))) or 0),
            int(s.scalar(select(func.count(Volume.id))) or 0),
            int(s.scalar(select(func.count(Task.id))) or 0),
        )


@dataclass
class FakeAuth:
    """Stands in for the authenticator: every bearer token is this principal."""

    principal: Principal

    def authenticate(self, token: str, **_: Any) -> Principal:
        return self.principal


@contextmanager
def acting_as(plat: Platform, principal: Principal) -> Iterator[None]:
    app: Any = plat.client.app
    real = app.state.authenticator
    app.state.authenticator = FakeAuth(principal)
    try:
        yield
    finally:
        app.state.authenticator = real


def other_tenant(plat: Platform, name: str = "acme", project: str = "web") -> tuple[str, str]:
    now = utcnow()
    tid, pid = new_id("tnt"), new_id("prj")
    with plat.svc.db.session() as s:
        s.add(Tenant(id=tid, name=name, created_at=now))
        s.flush()
        s.add(Project(id=pid, tenant_id=tid, name=project, created_at=now))
    return tid, pid


def principal(
    tenant_id: str,
    tenant: str,
    *roles: str,
    project_roles: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> Principal:
    return Principal(
        subject="usr-test",
        tenant_id=tenant_id,
        tenant=tenant,
        roles=roles,
        project_roles=project_roles,
    )


# --- reading and setting ---


def test_no_quota_means_no_limits_and_zero_usage(plat: Platform) -> None:
    t = get(plat, "/v1/tenants/default/quota")
    assert t["scope"] == "tenant"
    assert t["tenant"] == "default" and t["project"] is None
    assert t["limits"] == NO_LIMITS
    assert t["usage"] == ZERO
    p = get(plat, "/v1/projects/default/quota")
    assert p["scope"] == "project"
    assert (p["tenant"], p["project"]) == ("default", "default")
    assert p["limits"] == NO_LIMITS and p["usage"] == ZERO


def test_set_and_read_back_tenant_and_project_quota(plat: Platform) -> None:
    view = set_tenant(plat, cpu=8, memory_mb=8192, disk_gb=100, cells=20, volumes_gb=50)
    assert view["limits"] == {
        "cpu": 8.0,
        "memory_mb": 8192,
        "disk_gb": 100,
        "cells": 20,
        "volumes_gb": 50,
    }
    assert get(plat, "/v1/tenants/default/quota")["limits"] == view["limits"]
    pv = set_project(plat, cpu=2.5, cells=4)
    assert pv["limits"] == {**NO_LIMITS, "cpu": 2.5, "cells": 4}
    got = get(plat, "/v1/projects/default/quota")
    assert got["limits"] == pv["limits"] and got["scope"] == "project"
    # The tenant view also shows what the project quotas hand out.
    assert get(plat, "/v1/tenants/default/quota")["allocated"] == {
        **ZERO,
        "cpu": 2.5,
        "cells": 4,
    }


def test_put_replaces_every_limit(plat: Platform) -> None:
    set_project(plat, cpu=2, cells=4)
    assert set_project(plat, cells=3)["limits"] == {**NO_LIMITS, "cells": 3}
    assert set_project(plat, cells=None)["limits"] == NO_LIMITS


def test_tenant_and_project_by_id(plat: Platform) -> None:
    tid, pid = ids(plat)
    set_tenant(plat, tid, cells=9)
    set_project(plat, pid, cells=2)
    assert get(plat, "/v1/tenants/default/quota")["limits"]["cells"] == 9
    assert get(plat, "/v1/projects/default/quota")["limits"]["cells"] == 2


def test_set_is_audited(plat: Platform) -> None:
    tid, _ = ids(plat)
    set_tenant(plat, cells=10)
    set_project(plat, cells=3, cpu=1.5)
    with plat.svc.db.reader() as s:
        events = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "quota.set").order_by(AuditEvent.id)
        ).all()
        assert [(e.tenant_id, e.target, e.outcome) for e in events] == [
            (tid, "tenant:default", "success"),
            (tid, "project:default/default", "success"),
        ]
        assert events[1].detail == {**NO_LIMITS, "cells": 3, "cpu": 1.5}
        assert events[0].actor.startswith("user:")


def test_a_refused_set_is_not_audited(plat: Platform) -> None:
    set_tenant(plat, cells=2)
    r = put(plat, "/v1/projects/default/quota", {"cells": 3})
    assert r.status_code == 409
    assert put(plat, "/v1/projects/default/quota", {"cells": -1}).status_code == 422
    with plat.svc.db.reader() as s:
        n = s.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "quota.set"))
    assert n == 1


# --- validation ---


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cpu": -1}, "cpu"),
        ({"memory_mb": -1}, "memory_mb"),
        ({"disk_gb": -5}, "disk_gb"),
        ({"cells": -1}, "cells"),
        ({"volumes_gb": -1}, "volumes_gb"),
        ({"cells": 1.5}, "cells"),
        ({"cells": "3"}, "cells"),
        ({"cells": True}, "cells"),
        ({"cpu": "x"}, "cpu"),
        ({"cpu": True}, "cpu"),
        ({"memory_mb": 2**31}, "memory_mb"),
        ({"gpus": 2}, "gpus"),
        ({"cells": 2, "limits": {"cells": 3}}, "limits"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/tenants/default/quota", "/v1/projects/default/quota"])
def test_invalid_limits_are_refused_naming_the_field_and_change_nothing(
    plat: Platform, path: str, body: dict[str, Any], field: str
) -> None:
    before = put(plat, path, {"cells": 7, "cpu": 3})
    assert before.status_code == 200, before.text
    r = put(plat, path, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["type"].endswith("/validation")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert get(plat, path)["limits"] == {**NO_LIMITS, "cells": 7, "cpu": 3.0}


def test_malformed_body_is_a_problem(plat: Platform) -> None:
    r = plat.client.put(
        "/v1/projects/default/quota",
        content=b"{nope",
        headers={**plat.admin, "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["type"].endswith("/malformed")


def test_zero_limits_are_allowed_and_block_everything(plat: Platform) -> None:
    set_project(plat, cpu=0, memory_mb=0, disk_gb=0, cells=0, volumes_gb=0)
    refused(
        cell(plat, "a"), "project default: cpu quota is 0.0, 0.0 in use, this request needs 0.1"
    )
    refused(
        volume(plat, "v", 1),
        "project default: volumes_gb quota is 0, 0 in use, this request needs 1",
    )


def test_unknown_tenant_and_project_answer_404(plat: Platform) -> None:
    for path in ("/v1/tenants/nope/quota", "/v1/projects/nope/quota"):
        r = plat.client.get(path, headers=plat.admin)
        assert r.status_code == 404, r.text
        assert r.json()["type"].endswith("/not-found")
        assert put(plat, path, {"cells": 1}).status_code == 404


def test_routes_need_a_token(plat: Platform) -> None:
    for path in ("/v1/tenants/default/quota", "/v1/projects/default/quota"):
        assert plat.client.get(path).status_code == 401
        assert plat.client.put(path, json={}).status_code == 401


# --- who may do what ---


def test_tenant_admin_sets_project_quotas_but_not_the_tenant_quota(plat: Platform) -> None:
    tid, _ = ids(plat)
    admin = principal(tid, "default", "tenant-admin")
    with acting_as(plat, admin):
        assert set_project(plat, cells=2)["limits"]["cells"] == 2
        r = put(plat, "/v1/tenants/default/quota", {"cells": 5})
        assert r.status_code == 403, r.text
        assert "tenants:write" in r.json()["detail"]
        assert get(plat, "/v1/tenants/default/quota")["limits"] == NO_LIMITS
    with plat.svc.db.reader() as s:
        actors = s.scalars(select(AuditEvent.actor).where(AuditEvent.action == "quota.set")).all()
    assert actors == ["user:usr-test"]


def test_project_members_read_but_do_not_set(plat: Platform) -> None:
    tid, pid = ids(plat)
    set_project(plat, cells=3)
    for who in (
        principal(tid, "default", "project-member"),
        principal(tid, "default", project_roles=((pid, ("project-viewer",)),)),
    ):
        with acting_as(plat, who):
            assert get(plat, "/v1/projects/default/quota")["limits"]["cells"] == 3
            r = put(plat, "/v1/projects/default/quota", {"cells": 99})
            assert r.status_code == 403, r.text
    assert get(plat, "/v1/projects/default/quota")["limits"]["cells"] == 3


def test_other_tenants_do_not_exist_for_the_caller(plat: Platform) -> None:
    tid, _ = ids(plat)
    other_tid, _ = other_tenant(plat)
    set_tenant(plat, "acme", cells=4)
    outsider = principal(other_tid, "acme", "tenant-admin")
    with acting_as(plat, outsider):
        assert plat.client.get("/v1/tenants/default/quota", headers=plat.admin).status_code == 404
        assert plat.client.get(f"/v1/tenants/{tid}/quota", headers=plat.admin).status_code == 404
        # The project named "default" belongs to another tenant: it does not exist here.
        assert plat.client.get("/v1/projects/default/quota", headers=plat.admin).status_code == 404
        assert put(plat, "/v1/projects/default/quota", {"cells": 1}).status_code == 404
        # Their own tenant and project they see.
        assert get(plat, "/v1/tenants/acme/quota")["limits"]["cells"] == 4
        assert get(plat, "/v1/projects/web/quota")["tenant"] == "acme"
    assert get(plat, "/v1/projects/default/quota")["limits"] == NO_LIMITS


def test_system_admin_reads_and_sets_any_tenant(plat: Platform) -> None:
    other_tenant(plat)
    view = set_tenant(plat, "acme", cpu=16, cells=10)
    assert view["tenant"] == "acme" and view["limits"]["cells"] == 10
    assert get(plat, "/v1/tenants/acme/quota")["limits"]["cpu"] == 16.0
    # ... but a project of another tenant only through that tenant's own callers.
    assert plat.client.get("/v1/projects/web/quota", headers=plat.admin).status_code == 404
    assert get(plat, "/v1/tenants/default/quota")["limits"] == NO_LIMITS


# --- the split rule ---


def test_project_quotas_may_not_add_up_to_more_than_the_tenant_quota(plat: Platform) -> None:
    new_project(plat, "web")
    set_tenant(plat, cpu=4, cells=10)
    set_project(plat, "default", cpu=3, cells=6)
    r = put(plat, "/v1/projects/web/quota", {"cpu": 2})
    conflict(r, "cpu", "5.0", "4.0")
    assert r.json()["detail"] == (
        "tenant default: the project quotas of cpu would add up to 5.0, "
        "more than the tenant's cpu quota of 4.0"
    )
    assert get(plat, "/v1/projects/web/quota")["limits"] == NO_LIMITS  # nothing changed
    r = put(plat, "/v1/projects/web/quota", {"cpu": 1, "cells": 5})
    conflict(r, "cells", "11", "10")
    assert get(plat, "/v1/projects/web/quota")["limits"] == NO_LIMITS
    # Exactly the rest fits; re-setting a project replaces its own share.
    assert set_project(plat, "web", cpu=1, cells=4)["limits"]["cpu"] == 1.0
    assert set_project(plat, "default", cpu=3, cells=6)["limits"]["cells"] == 6
    assert set_project(plat, "default", cpu=2.5, cells=1)["limits"]["cpu"] == 2.5


def test_the_split_rule_only_binds_limits_set_on_both_sides(plat: Platform) -> None:
    new_project(plat, "web")
    set_tenant(plat, cells=2)
    # No tenant cpu limit: any project cpu limit is fine; unset project limits add nothing.
    set_project(plat, "default", cpu=100, cells=2)
    set_project(plat, "web", cpu=100, memory_mb=10**6)
    conflict(put(plat, "/v1/projects/web/quota", {"cells": 1}), "cells", "3", "2")


def test_tenant_quota_may_not_drop_below_what_projects_hold(plat: Platform) -> None:
    new_project(plat, "web")
    set_project(plat, "default", memory_mb=1024, cells=3)
    set_project(plat, "web", memory_mb=512)
    r = put(plat, "/v1/tenants/default/quota", {"memory_mb": 1500})
    conflict(r, "memory_mb", "1536", "1500")
    assert get(plat, "/v1/tenants/default/quota")["limits"] == NO_LIMITS
    assert set_tenant(plat, memory_mb=1536, cells=3)["limits"]["memory_mb"] == 1536
    # Lifting a project's limit frees its share of the tenant quota.
    set_project(plat, "web", memory_mb=None)
    assert set_tenant(plat, memory_mb=1024, cells=3)["allocated"]["memory_mb"] == 1024


# --- admission of each resource ---


def test_project_cpu_quota(plat: Platform) -> None:
    set_project(plat, cpu=0.3)
    for name in ("a", "b", "c"):  # 0.1 three times is exactly 0.3, not a hair above it
        assert cell(plat, name).status_code == 202
    refused(
        cell(plat, "d"), "project default: cpu quota is 0.3, 0.3 in use, this request needs 0.1"
    )


def test_project_memory_quota(plat: Platform) -> None:
    set_project(plat, memory_mb=100)
    assert cell(plat, "a", memory_mb=64).status_code == 202
    refused(
        cell(plat, "b", memory_mb=64),
        "project default: memory_mb quota is 100, 64 in use, this request needs 64",
    )
    assert cell(plat, "c", memory_mb=36).status_code == 202


def test_project_disk_quota(plat: Platform) -> None:
    set_project(plat, disk_gb=3)
    assert cell(plat, "a", disk_gb=2).status_code == 202
    assert cell(plat, "b").status_code == 202  # explicit sizing without disk needs none
    refused(
        cell(plat, "c", disk_gb=2),
        "project default: disk_gb quota is 3, 2 in use, this request needs 2",
    )
    # A flavor's disk counts too (SMALL: 0.5 cpu, 512 MB, 1 GB).
    r = plat.client.post(
        "/v1/projects/default/cells",
        json={"name": "d", "image": "host", "flavor": "SMALL"},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
    refused(
        plat.client.post(
            "/v1/projects/default/cells",
            json={"name": "e", "image": "host", "flavor": "SMALL"},
            headers=plat.admin,
        ),
        "project default: disk_gb quota is 3, 3 in use, this request needs 1",
    )


def test_project_cells_quota(plat: Platform) -> None:
    set_project(plat, cells=2)
    assert cell(plat, "a").status_code == 202
    assert cell(plat, "b").status_code == 202
    refused(cell(plat, "c"), "project default: cells quota is 2, 2 in use, this request needs 1")
    assert get(plat, "/v1/projects/default/quota")["usage"] == {
        **ZERO,
        "cpu": 0.2,
        "memory_mb": 64,
        "cells": 2,
    }


def test_project_volumes_quota(plat: Platform) -> None:
    set_project(plat, volumes_gb=5)
    assert volume(plat, "v1", 3).status_code == 201
    refused(
        volume(plat, "v2", 3),
        "project default: volumes_gb quota is 5, 3 in use, this request needs 3",
    )
    assert volume(plat, "v3", 2).status_code == 201
    assert get(plat, "/v1/projects/default/quota")["usage"]["volumes_gb"] == 5
    # Volumes need no cells, cpu or memory: a cells quota of 0 does not block them.
    set_project(plat, cells=0, volumes_gb=6)
    assert volume(plat, "v4", 1).status_code == 201


def test_volumes_do_not_count_against_cell_resources(plat: Platform) -> None:
    set_project(plat, disk_gb=1)
    assert volume(plat, "big", 100).status_code == 201
    assert cell(plat, "a", disk_gb=1).status_code == 202


@pytest.mark.parametrize(
    ("limits", "body", "detail"),
    [
        ({"cpu": 0.2}, {}, "cpu quota is 0.2, 0.2 in use, this request needs 0.1"),
        ({"memory_mb": 64}, {}, "memory_mb quota is 64, 64 in use, this request needs 32"),
        ({"disk_gb": 2}, {"disk_gb": 1}, "disk_gb quota is 2, 2 in use, this request needs 1"),
        ({"cells": 2}, {}, "cells quota is 2, 2 in use, this request needs 1"),
    ],
)
def test_tenant_quota_binds_all_projects_together(
    plat: Platform, limits: dict[str, Any], body: dict[str, Any], detail: str
) -> None:
    new_project(plat, "web")
    set_tenant(plat, **limits)
    assert cell(plat, "a", "default", **body).status_code == 202
    assert cell(plat, "b", "web", **body).status_code == 202
    refused(cell(plat, "c", "web", **body), f"tenant default: {detail}")
    refused(cell(plat, "c", "default", **body), f"tenant default: {detail}")
    assert get(plat, "/v1/tenants/default/quota")["usage"]["cells"] == 2
    assert get(plat, "/v1/projects/web/quota")["usage"]["cells"] == 1


def test_tenant_volumes_quota(plat: Platform) -> None:
    new_project(plat, "web")
    set_tenant(plat, volumes_gb=4)
    assert volume(plat, "a", 2, "default").status_code == 201
    assert volume(plat, "b", 2, "web").status_code == 201
    refused(
        volume(plat, "c", 1, "web"),
        "tenant default: volumes_gb quota is 4, 4 in use, this request needs 1",
    )


def test_the_project_limit_is_checked_before_the_tenant_limit(plat: Platform) -> None:
    set_tenant(plat, cells=2)
    set_project(plat, cells=1)
    assert cell(plat, "a").status_code == 202
    refused(cell(plat, "b"), "project default: cells quota is 1, 1 in use, this request needs 1")
    new_project(plat, "web")
    assert cell(plat, "c", "web").status_code == 202
    refused(
        cell(plat, "d", "web"), "tenant default: cells quota is 2, 2 in use, this request needs 1"
    )


def test_other_tenants_usage_does_not_count(plat: Platform) -> None:
    other_tid, other_pid = other_tenant(plat)
    now = utcnow()
    with plat.svc.db.session() as s:
        img = s.scalar(select(Image.id).where(Image.name == "host"))
        assert img is not None
        for i in range(3):
            s.add(
                Cell(
                    id=new_id("cel"),
                    project_id=other_pid,
                    name=f"x{i}",
                    image_id=img,
                    cpu=1.0,
                    memory_mb=64,
                    disk_gb=0,
                    desired_state="RUNNING",
                    state="PENDING",
                    created_at=now,
                    updated_at=now,
                )
            )
    set_tenant(plat, cells=1)
    assert cell(plat, "a").status_code == 202
    with plat.svc.db.reader() as s:
        assert quotas.usage(s, other_tid)["cells"] == 3
        assert quotas.usage(s, other_tid, other_pid)["cpu"] == 3.0


def test_a_refused_create_writes_nothing(plat: Platform) -> None:
    set_project(plat, cells=1, volumes_gb=1)
    assert cell(plat, "a").status_code == 202
    assert volume(plat, "v", 1).status_code == 201
    before = counts(plat)
    refused(cell(plat, "b"), "project default: cells quota is 1, 1 in use, this request needs 1")
    refused(
        volume(plat, "w", 1),
        "project default: volumes_gb quota is 1, 1 in use, this request needs 1",
    )
    assert counts(plat) == before
    # An idempotent retry of a refused request is refused again (nothing was stored).
    headers = {**plat.admin, "Idempotency-Key": "k-1"}
    body = {"name": "b", "image": "host", **TINY}
    for _ in range(2):
        r = plat.client.post("/v1/projects/default/cells", json=body, headers=headers)
        assert r.status_code == 409 and r.json()["type"].endswith("/quota-exceeded")
    assert counts(plat) == before


# --- usage: what counts ---


def test_a_stopped_cell_keeps_its_reservation(plat: Platform) -> None:
    set_project(plat, cells=1)
    assert cell(plat, "a", start=False).status_code == 202
    refused(cell(plat, "b"), "project default: cells quota is 1, 1 in use, this request needs 1")
    cid = plat.cell_id("a")
    assert plat.client.post(f"/v1/cells/{cid}/start", headers=plat.admin).status_code == 202
    assert plat.client.post(f"/v1/cells/{cid}/stop", headers=plat.admin).status_code == 202
    assert plat.cell(cid)["desired_state"] == "STOPPED"
    refused(cell(plat, "b"), "project default: cells quota is 1, 1 in use, this request needs 1")


def test_a_cell_being_deleted_no_longer_counts(plat: Platform) -> None:
    set_project(plat, cells=1, cpu=0.1)
    assert cell(plat, "a").status_code == 202
    plat.schedule()  # placed on the host: deleting it takes the agent, the row stays meanwhile
    cid = plat.cell_id("a")
    assert plat.cell(cid)["host"] is not None
    assert plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).status_code == 202
    assert plat.cell(cid)["state"] == "DELETING"
    assert get(plat, "/v1/projects/default/quota")["usage"] == ZERO
    assert cell(plat, "b").status_code == 202


def test_a_volume_being_deleted_no_longer_counts(plat: Platform) -> None:
    set_project(plat, volumes_gb=2)
    assert volume(plat, "v", 2).status_code == 201
    with plat.svc.db.session() as s:
        v = s.scalar(select(Volume).where(Volume.name == "v"))
        assert v is not None
        v.state = "DELETING"  # what delete does to a volume bound to a host
    assert get(plat, "/v1/projects/default/quota")["usage"]["volumes_gb"] == 0
    assert volume(plat, "w", 2).status_code == 201


def test_lowering_a_quota_below_usage_only_blocks_new_admissions(plat: Platform) -> None:
    for name in ("a", "b", "c"):
        assert cell(plat, name).status_code == 202
    view = set_project(plat, cells=1, cpu=0.1)
    assert view["limits"]["cells"] == 1
    assert view["usage"]["cells"] == 3  # nothing is taken away
    assert plat.cell_count() == 3
    refused(
        cell(plat, "d"), "project default: cpu quota is 0.1, 0.3 in use, this request needs 0.1"
    )
    # Other resources still admit; restarting an existing cell is no admission.
    assert volume(plat, "v", 1).status_code == 201
    cid = plat.cell_id("a")
    assert plat.client.post(f"/v1/cells/{cid}/restart", headers=plat.admin).status_code == 202
    # Deleting cells (never placed: gone at once) frees usage until a new one fits again.
    for name in ("a", "b"):
        r = plat.client.delete(f"/v1/cells/{plat.cell_id(name)}", headers=plat.admin)
        assert r.status_code == 202
    refused(
        cell(plat, "d"), "project default: cpu quota is 0.1, 0.1 in use, this request needs 0.1"
    )
    r = plat.client.delete(f"/v1/cells/{plat.cell_id('c')}", headers=plat.admin)
    assert r.status_code == 202
    assert cell(plat, "d").status_code == 202


def test_the_quota_is_checked_before_capacity(bare: Platform) -> None:
    # No host at all: without a quota the answer is a capacity refusal, with one the quota's.
    r = cell(bare, "a")
    assert r.status_code == 409 and r.json()["type"].endswith("/insufficient-capacity")
    set_project(bare, cells=0)
    refused(cell(bare, "a"), "project default: cells quota is 0, 0 in use, this request needs 1")


# --- the service functions directly ---


def test_admit_with_no_quota_rows_enforces_nothing(plat: Platform) -> None:
    tid, pid = ids(plat)
    with plat.svc.db.session() as s:
        quotas.admit(s, tenant_id=tid, project_id=pid, cpu=10**6, cells=10**6, volumes_gb=10**6)
        assert s.scalar(select(func.count(Quota.id))) == 0


def test_admit_of_nothing_passes_even_over_quota(plat: Platform) -> None:
    tid, pid = ids(plat)
    assert cell(plat, "a").status_code == 202
    set_project(plat, cpu=0, memory_mb=0, disk_gb=0, cells=0, volumes_gb=0)
    with plat.svc.db.session() as s:
        quotas.admit(s, tenant_id=tid, project_id=pid)
        with pytest.raises(QuotaExceeded, match="project default: cells quota is 0, 1 in use"):
            quotas.admit(s, tenant_id=tid, project_id=pid, cells=1)


def test_usage_of_tenant_and_project(plat: Platform) -> None:
    tid, pid = ids(plat)
    new_project(plat, "web")
    assert cell(plat, "a", cpu=0.25, memory_mb=100, disk_gb=3).status_code == 202
    assert cell(plat, "b", "web", cpu=0.5, memory_mb=50).status_code == 202
    assert volume(plat, "v", 7, "web").status_code == 201
    with plat.svc.db.reader() as s:
        assert quotas.usage(s, tid, pid) == {
            "cpu": 0.25,
            "memory_mb": 100,
            "disk_gb": 3,
            "cells": 1,
            "volumes_gb": 0,
        }
        assert quotas.usage(s, tid) == {
            "cpu": 0.75,
            "memory_mb": 150,
            "disk_gb": 3,
            "cells": 2,
            "volumes_gb": 7,
        }


def test_admission_sees_rows_committed_by_earlier_transactions(plat: Platform) -> None:
    tid, pid = ids(plat)
    set_project(plat, cells=1)
    # One long-lived reader loaded the quota and saw no usage; later admissions must not care.
    with plat.svc.db.reader() as old:
        assert quotas.usage(old, tid, pid)["cells"] == 0
        assert cell(plat, "a").status_code == 202
    with plat.svc.db.session() as s, pytest.raises(QuotaExceeded, match="1 in use"):
        quotas.admit(s, tenant_id=tid, project_id=pid, cells=1)


def test_service_functions_scope_by_principal(plat: Platform) -> None:
    tid, _ = ids(plat)
    other_tid, _ = other_tenant(plat)
    member = principal(tid, "default", "project-member")
    view = quotas.get_quota(plat.svc, member, project="default")
    assert view["scope"] == "project"
    with pytest.raises(NotFound):
        quotas.get_quota(plat.svc, member, tenant="acme")
    with pytest.raises(NotFound):
        quotas.get_quota(plat.svc, principal(other_tid, "acme", "tenant-admin"), project="default")
    with pytest.raises(ValueError):
        quotas.get_quota(plat.svc, member)
    with pytest.raises(ValueError):
        quotas.get_quota(plat.svc, member, tenant="default", project="default")
    admin = principal(tid, "default", "tenant-admin")
    out = quotas.set_quota(plat.svc, admin, quotas.QuotaLimits(cells=3), project="default")
    assert out["limits"]["cells"] == 3
    with pytest.raises(Forbidden):
        quotas.set_quota(plat.svc, admin, quotas.QuotaLimits(cells=3), tenant="default")
    assert quotas.get_quota(plat.svc, admin, tenant="default")["limits"] == NO_LIMITS


# --- clusters ---


def group(name: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "roles": ["basic"],
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": 256,
        "storage": {"sizeGB": 1},
        **extra,
    }


def create_cluster(plat: Platform, name: str, *groups: dict[str, Any]) -> Any:
    return plat.client.post(
        "/v1/projects/default/clusters",
        json={"name": name, "spec": {"nodeGroups": list(groups)}},
        headers=plat.admin,
    )


def test_cluster_create_is_admitted_for_all_its_nodes(plat: Platform) -> None:
    set_project(plat, cells=3, cpu=3, memory_mb=1024)
    refused(
        create_cluster(plat, "big", group("a", 2), group("b", 2)),
        "project default: cpu quota is 3.0, 0.0 in use, this request needs 4.0",
    )
    set_project(plat, cells=3, cpu=4, memory_mb=1024)
    refused(
        create_cluster(plat, "big", group("a", 2), group("b", 2)),
        "project default: cells quota is 3, 0 in use, this request needs 4",
    )
    with plat.svc.db.reader() as s:
        assert s.scalar(select(func.count(Cluster.id))) == 0
    assert cell(plat, "x").status_code == 202
    refused(
        create_cluster(plat, "c3", group("a", 3)),
        "project default: cells quota is 3, 1 in use, this request needs 3",
    )
    r = create_cluster(plat, "c2", group("a", 2))
    assert r.status_code == 202, r.text


def test_cluster_nodes_are_sized_as_the_executor_makes_their_cells(plat: Platform) -> None:
    _, pid = ids(plat)
    empty = Resources(0, 0, 0)  # each cell gets at least 0.01 cpu and 64 MB
    set_project(plat, memory_mb=127, cpu=0.02)
    with plat.svc.db.session() as s, pytest.raises(QuotaExceeded) as exc:
        quotas.admit_nodes(s, pid, [empty, empty])
    assert exc.value.detail.endswith("memory_mb quota is 127, 0 in use, this request needs 128")
    set_project(plat, memory_mb=128, cpu=0.02)
    with plat.svc.db.session() as s:
        quotas.admit_nodes(s, pid, [empty, empty])
        with pytest.raises(QuotaExceeded) as exc:
            quotas.admit_nodes(s, pid, [empty] * 3)
    assert exc.value.detail.endswith("cpu quota is 0.02, 0.0 in use, this request needs 0.03")


def _make_running(plat: Platform, cluster: str, nodes: list[str]) -> str:
    """Play the executor: the cluster is RUNNING with a node (and a cell) per name."""
    _, pid = ids(plat)
    now = utcnow()
    for n in nodes:
        assert cell(plat, n, cpu=1, memory_mb=256, disk_gb=1).status_code == 202
    with plat.svc.db.session() as s:
        c = s.scalar(select(Cluster).where(Cluster.project_id == pid, Cluster.name == cluster))
        assert c is not None
        c.state, c.operation = "RUNNING", None
        for n in nodes:
            grp, idx = n.split("-")[-2], int(n.split("-")[-1])
            s.add(
                ClusterNode(
                    id=new_id("nod"),
                    cluster_id=c.id,
                    name=n,
                    group=grp,
                    index=idx,
                    roles=["basic"],
                    role_states={},
                    state="SERVICE_READY",
                    created_at=now,
                    updated_at=now,
                )
            )
        return c.id


def test_cluster_resize_is_admitted_for_the_added_nodes_only(plat: Platform) -> None:
    assert create_cluster(plat, "k", group("w", 2)).status_code == 202
    cid = _make_running(plat, "k", ["k-w-0", "k-w-1"])
    set_project(plat, cpu=3, cells=3)

    def resize(n: int) -> Any:
        return plat.client.post(
            f"/v1/clusters/{cid}/resize",
            json={"nodeGroup": "w", "instanceNum": n},
            headers=plat.admin,
        )

    refused(resize(4), "project default: cpu quota is 3.0, 2.0 in use, this request needs 2.0")
    r = resize(3)  # all three nodes need 3 cpu; only the added one is asked for
    assert r.status_code == 202, r.text


def test_cluster_shrink_needs_no_quota(plat: Platform) -> None:
    assert create_cluster(plat, "k", group("w", 2)).status_code == 202
    cid = _make_running(plat, "k", ["k-w-0", "k-w-1"])
    set_project(plat, cpu=0, cells=0)
    r = plat.client.post(
        f"/v1/clusters/{cid}/resize",
        json={"nodeGroup": "w", "instanceNum": 1},
        headers=plat.admin,
    )
    assert r.status_code == 202, r.text
