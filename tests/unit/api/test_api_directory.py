"""The directory API: tenants, users, groups, clients, role assignments, LDAP settings, audit."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import PROBLEM, Platform
from cellplane_tenancy_support import token_for
from sqlalchemy import func, select

from cellplane.state.identity_models import AuditEvent, OAuthClient, RoleAssignment, User
from cellplane.state.models import Project, Tenant


def counts(plat: Platform) -> dict[str, int]:
    with plat.svc.db.reader() as s:
        return {
            m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Tenant, Project, User, OAuthClient, RoleAssignment)
        }


def post(plat: Platform, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return plat.client.post(path, json=body, headers=headers or plat.admin)


def test_create_tenant_with_its_first_admin_and_default_project(plat: Platform) -> None:
    r = post(plat, "/v1/tenants", {"name": "acme", "admin": {"name": "alice"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "acme" and r.headers["location"] == "/v1/tenants/acme"
    assert body["admin"]["name"] == "alice"
    assert len(body["admin"]["password"]) >= 20  # generated, shown once
    assert (
        "password"
        not in plat.client.get(f"/v1/users/{body['admin']['id']}", headers=plat.admin).text
    )
    alice = token_for(plat, body["id"], body["admin"]["id"])
    me = plat.client.get("/v1/whoami", headers=alice).json()
    assert me["tenant"] == "acme" and me["roles"] == ["tenant-admin"]
    projects = plat.client.get("/v1/projects", headers=alice).json()["items"]
    assert [p["name"] for p in projects] == ["default"]
    # The new tenant admin cannot see the operator's tenant list beyond their own tenant.
    assert plat.client.get("/v1/tenants", headers=alice).status_code == 403


def test_bad_tenant_requests_change_nothing(plat: Platform) -> None:
    before = counts(plat)
    cases: list[tuple[Any, str]] = [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"name": "ok", "admin": {"name": "a", "password": "short"}}, "admin.password"),
        ({"name": "ok", "extra": 1}, "extra"),
    ]
    for body, field in cases:
        r = post(plat, "/v1/tenants", body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        assert any(e["field"] == field for e in r.json()["errors"]), r.text
    assert post(plat, "/v1/tenants", {"name": "default"}).status_code == 409
    assert counts(plat) == before


def test_users_are_scoped_to_the_callers_tenant(plat: Platform) -> None:
    acme = post(plat, "/v1/tenants", {"name": "acme"}).json()
    acme_admin = token_for(plat, acme["id"], acme["admin"]["id"])
    u = post(plat, "/v1/users", {"name": "bob", "password": "correct horse battery"}).json()
    assert "password" not in u
    # The same name in another tenant is another user; ids of one tenant are 404 in the other.
    assert post(plat, "/v1/users", {"name": "bob"}, acme_admin).status_code == 201
    assert plat.client.get(f"/v1/users/{u['id']}", headers=acme_admin).status_code == 404
    names = [x["name"] for x in plat.client.get("/v1/users", headers=acme_admin).json()["items"]]
    assert sorted(names) == ["admin", "bob"]
    assert post(plat, "/v1/users", {"name": "bob"}).status_code == 409


def test_update_unlock_disable_and_delete_user(plat: Platform) -> None:
    u = post(plat, "/v1/users", {"name": "carol"}).json()
    with plat.svc.db.session() as s:
        row = s.get(User, u["id"])
        assert row is not None
        row.failed_logins, row.locked_until = 5, 9e12
    assert plat.client.get(f"/v1/users/{u['id']}", headers=plat.admin).json()["locked"] is True
    r = plat.client.patch(
        f"/v1/users/{u['id']}", json={"unlock": True, "display_name": "Carol"}, headers=plat.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["locked"] is False and r.json()["display_name"] == "Carol"
    r = plat.client.patch(f"/v1/users/{u['id']}", json={"password": "short"}, headers=plat.admin)
    assert r.status_code == 422
    assert plat.client.delete(f"/v1/users/{u['id']}", headers=plat.admin).status_code == 204
    assert plat.client.get(f"/v1/users/{u['id']}", headers=plat.admin).status_code == 404
    # Nobody deletes or disables themselves.
    me = plat.client.get("/v1/whoami", headers=plat.admin).json()["subject"]
    assert plat.client.delete(f"/v1/users/{me}", headers=plat.admin).status_code == 409
    r = plat.client.patch(f"/v1/users/{me}", json={"disabled": True}, headers=plat.admin)
    assert r.status_code == 409


def test_groups_carry_roles_to_their_members(plat: Platform) -> None:
    u = post(plat, "/v1/users", {"name": "dave"}).json()
    post(plat, "/v1/projects", {"name": "web"})
    g = post(plat, "/v1/groups", {"name": "web-devs"}).json()
    r = plat.client.put(f"/v1/groups/{g['id']}/members/dave", headers=plat.admin)
    assert r.status_code == 200 and r.json()["members"] == ["dave"]
    r = post(
        plat,
        "/v1/role-assignments",
        {"group": "web-devs", "role": "project-member", "project": "web"},
    )
    assert r.status_code == 201, r.text
    dave = token_for(plat, _tenant_id(plat), u["id"])
    names = [p["name"] for p in plat.client.get("/v1/projects", headers=dave).json()["items"]]
    assert names == ["web"]  # only the project the group's role is in
    assert plat.client.get("/v1/projects/default/cells", headers=dave).status_code == 404
    assert plat.client.get("/v1/projects/web/cells", headers=dave).status_code == 200
    assert plat.client.get("/v1/users", headers=dave).status_code == 403
    r = plat.client.delete(f"/v1/groups/{g['id']}/members/dave", headers=plat.admin)
    assert r.json()["members"] == []


def test_clients_show_their_secret_once(plat: Platform) -> None:
    r = post(plat, "/v1/clients", {"name": "ci-bot"})
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["public"] is False and c["grant_types"] == ["client_credentials"]
    assert len(c["client_secret"]) >= 40
    shown = plat.client.get(f"/v1/clients/{c['client_id']}", headers=plat.admin).json()
    assert "client_secret" not in shown
    with plat.svc.db.reader() as s:
        row = s.get(OAuthClient, c["client_id"])
        assert row is not None and row.secret_hash and c["client_secret"] not in row.secret_hash
    rotated = post(plat, f"/v1/clients/{c['client_id']}/secret", None).json()
    assert rotated["client_secret"] != c["client_secret"]
    bad = post(
        plat, "/v1/clients", {"name": "spa", "public": True, "grant_types": ["client_credentials"]}
    )
    assert bad.status_code == 422
    bad = post(plat, "/v1/clients", {"name": "web", "grant_types": ["authorization_code"]})
    assert bad.status_code == 422 and "redirect_uris" in bad.text
    bad = post(
        plat,
        "/v1/clients",
        {
            "name": "web",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["http://evil.example/cb"],
        },
    )
    assert bad.status_code == 422


def test_role_assignment_rules(plat: Platform) -> None:
    u = post(plat, "/v1/users", {"name": "erin"}).json()
    before = counts(plat)
    bad: list[dict[str, Any]] = [
        {"user": "erin", "role": "wizard"},
        {"user": "erin", "role": "tenant-admin", "project": "default"},
        {"user": "erin", "group": "x", "role": "project-viewer"},
        {"role": "project-viewer"},
    ]
    for body in bad:
        assert post(plat, "/v1/role-assignments", body).status_code == 422, body
    assert (
        post(plat, "/v1/role-assignments", {"user": "nobody", "role": "project-viewer"}).status_code
        == 404
    )
    assert (
        post(
            plat,
            "/v1/role-assignments",
            {"user": "erin", "role": "project-viewer", "project": "nope"},
        ).status_code
        == 404
    )
    assert counts(plat) == before
    ok = post(plat, "/v1/role-assignments", {"user": "erin", "role": "tenant-admin"})
    assert ok.status_code == 201
    assert (
        post(plat, "/v1/role-assignments", {"user": "erin", "role": "tenant-admin"}).status_code
        == 409
    )
    # A tenant admin cannot make anyone a system admin.
    erin = token_for(plat, _tenant_id(plat), u["id"])
    r = post(plat, "/v1/role-assignments", {"user": "erin", "role": "system-admin"}, erin)
    assert r.status_code == 403
    # The last system-admin assignment stays.
    items = plat.client.get("/v1/role-assignments", headers=plat.admin).json()["items"]
    system = [a for a in items if a["scope"] == "system"]
    assert len(system) == 1
    r = plat.client.delete(f"/v1/role-assignments/{system[0]['id']}", headers=plat.admin)
    assert r.status_code == 409


def test_ldap_settings_hide_the_bind_secret(plat: Platform) -> None:
    body = {
        "url": "ldap://127.0.0.1:1",
        "bind_dn": "cn=svc,dc=example,dc=org",
        "bind_password": "s3cret-value",
        "user_base": "ou=people,dc=example,dc=org",
        "group_base": "ou=groups,dc=example,dc=org",
        "group_roles": {"admins": "tenant-admin"},
        "check": False,
    }
    assert plat.client.get("/v1/identity/ldap", headers=plat.admin).status_code == 404
    r = plat.client.put("/v1/identity/ldap", json=body, headers=plat.admin)
    assert r.status_code == 200, r.text
    assert "s3cret-value" not in r.text
    got = plat.client.get("/v1/identity/ldap", headers=plat.admin)
    assert got.json()["group_roles"] == {"admins": "tenant-admin"} and "s3cret" not in got.text
    # An unreachable directory is refused when checked, and nothing is saved.
    r = plat.client.put(
        "/v1/identity/ldap",
        json={**body, "check": True, "url": "ldap://127.0.0.1:2"},
        headers=plat.admin,
    )
    assert r.status_code == 422 and "127.0.0.1:2" in r.text
    assert (
        plat.client.get("/v1/identity/ldap", headers=plat.admin).json()["url"]
        == "ldap://127.0.0.1:1"
    )
    r = plat.client.put(
        "/v1/identity/ldap", json={**body, "group_roles": {"x": "wizard"}}, headers=plat.admin
    )
    assert r.status_code == 422


def test_audit_records_changes_and_refusals(plat: Platform) -> None:
    post(plat, "/v1/users", {"name": "frank"})
    plat.client.get("/v1/users", headers={"Authorization": "Bearer nope"})
    post(plat, "/v1/users", {"name": "frank"})  # 409
    events = plat.client.get("/v1/audit?limit=50", headers=plat.admin).json()["items"]
    actions = [(e["action"], e["outcome"]) for e in events]
    assert ("user.create", "success") in actions
    assert ("POST /v1/users", "success") in actions
    assert ("POST /v1/users", "failure") in actions
    e = next(e for e in events if e["action"] == "POST /v1/users")
    assert e["actor"].startswith("user:usr-") and e["source"] and e["at"]
    with plat.svc.db.reader() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)) >= 3
    r = plat.client.get("/v1/audit?limit=0", headers=plat.admin)
    assert r.status_code == 422


def test_rotating_signing_keys_keeps_issued_tokens_valid(plat: Platform) -> None:
    tenant_id = _tenant_id(plat)
    with plat.svc.db.reader() as s:
        admin_id = s.scalar(
            select(User.id).where(User.tenant_id == tenant_id, User.name == "admin")
        )
    assert admin_id
    old = token_for(plat, tenant_id, admin_id)
    r = post(plat, "/v1/identity/keys/rotate", None)
    assert r.status_code == 200
    kids = [k["kid"] for k in r.json()["jwks"]["keys"]]
    assert len(kids) == 2 and r.json()["kid"] in kids
    assert plat.client.get("/v1/whoami", headers=old).status_code == 200
    new = token_for(plat, tenant_id, admin_id)
    assert plat.client.get("/v1/whoami", headers=new).status_code == 200


def _tenant_id(plat: Platform) -> str:
    with plat.svc.db.reader() as s:
        return str(s.scalar(select(Tenant.id).where(Tenant.name == "default")))
