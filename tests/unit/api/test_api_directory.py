"""The directory API: tenants, users, groups, clients, role assignments, LDAP settings, audit."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from cellplane_platform_support import PROBLEM, Platform
from cellplane_tenancy_support import token_for
from sqlalchemy import func, select

from cellplane.api import routes_directory
from cellplane.identity.directory import federation as directory_federation
from cellplane.identity.ratelimit import RateLimiter
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
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"
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


# --- issue 7: defects found by probing the API as an attacker would ----------------------------


def test_system_admin_unlocks_a_user_of_another_tenant(plat: Platform) -> None:
    """A tenant's only admin, locked out, can be rescued by the operator (item 4)."""
    t = post(plat, "/v1/tenants", {"name": "locked-out"}).json()
    admin_id = t["admin"]["id"]
    with plat.svc.db.session() as s:
        row = s.get(User, admin_id)
        assert row is not None
        row.failed_logins, row.locked_until, row.last_failure_at = 10, 9e12, 1.0
    r = plat.client.patch(f"/v1/users/{admin_id}", json={"unlock": True}, headers=plat.admin)
    assert r.status_code == 200, r.text
    assert r.json()["locked"] is False and r.json()["id"] == admin_id
    with plat.svc.db.reader() as s:
        row = s.get(User, admin_id)
        assert row is not None and row.locked_until is None and row.failed_logins == 0
        seen = s.scalars(select(AuditEvent.action).where(AuditEvent.tenant_id == t["id"])).all()
    assert "user.update" in seen  # the tenant sees who unlocked its admin
    # Only unlocking crosses tenants; anything else stays the tenant's own business.
    r = plat.client.patch(
        f"/v1/users/{admin_id}", json={"unlock": True, "display_name": "x"}, headers=plat.admin
    )
    assert r.status_code == 404
    # And a tenant admin cannot unlock another tenant's user.
    acme = post(plat, "/v1/tenants", {"name": "acme2"}).json()
    other = token_for(plat, acme["id"], acme["admin"]["id"])
    r = plat.client.patch(f"/v1/users/{admin_id}", json={"unlock": True}, headers=other)
    assert r.status_code == 404


def _user_token(plat: Platform, name: str) -> tuple[str, dict[str, str]]:
    u = post(plat, "/v1/users", {"name": name}).json()
    post(plat, "/v1/role-assignments", {"role": "project-member", "user": u["id"]})
    with plat.svc.db.reader() as s:
        tid = s.scalar(select(Tenant.id).where(Tenant.name == "default"))
    assert tid is not None
    return u["id"], token_for(plat, tid, u["id"])


def test_a_disabled_or_deleted_users_token_stops_working_at_once(plat: Platform) -> None:
    """Item 7: the token is checked against its subject's status, not only its signature."""
    uid, token = _user_token(plat, "leaver")
    assert plat.client.get("/v1/projects/default/volumes", headers=token).status_code == 200
    r = plat.client.patch(f"/v1/users/{uid}", json={"disabled": True}, headers=plat.admin)
    assert r.status_code == 200
    assert plat.client.get("/v1/projects/default/volumes", headers=token).status_code == 401
    r = plat.client.patch(f"/v1/users/{uid}", json={"disabled": False}, headers=plat.admin)
    assert plat.client.get("/v1/whoami", headers=token).status_code == 200
    uid2, token2 = _user_token(plat, "gone")
    assert plat.client.get("/v1/whoami", headers=token2).status_code == 200
    assert plat.client.delete(f"/v1/users/{uid2}", headers=plat.admin).status_code == 204
    r = plat.client.post(
        "/v1/projects/default/volumes", json={"name": "ghost", "size_gb": 1}, headers=token2
    )
    assert r.status_code == 401, r.text
    # A change made by another process (straight in the database) is seen within seconds.
    uid3, token3 = _user_token(plat, "elsewhere")
    assert plat.client.get("/v1/whoami", headers=token3).status_code == 200
    with plat.svc.db.session() as s:
        row = s.get(User, uid3)
        assert row is not None
        row.disabled = True
    deadline = time.monotonic() + 10
    while plat.client.get("/v1/whoami", headers=token3).status_code == 200:
        assert time.monotonic() < deadline, "a disabled user's token kept working"
        time.sleep(0.5)


def test_a_deleted_clients_token_stops_working(plat: Platform) -> None:
    c = post(plat, "/v1/clients", {"name": "robot"}).json()
    post(plat, "/v1/role-assignments", {"role": "project-viewer", "client": c["client_id"]})
    r = plat.client.post(
        "/identity/default/token",
        data={"grant_type": "client_credentials"},
        auth=(c["client_id"], c["client_secret"]),
        headers={"host": "127.0.0.1"},
    )
    if r.status_code != 200:  # authlib wants https or loopback
        pytest.skip(f"client credentials over the test transport: {r.status_code} {r.text}")
    token = {"Authorization": f"Bearer {r.json()['access_token']}", "host": "127.0.0.1"}
    assert plat.client.get("/v1/whoami", headers=token).status_code == 200
    assert (
        plat.client.delete(f"/v1/clients/{c['client_id']}", headers=plat.admin).status_code == 204
    )
    assert plat.client.get("/v1/whoami", headers=token).status_code == 401


LDAP_BODY = {
    "bind_dn": "cn=svc,dc=example,dc=org",
    "bind_password": "s3cret-value",
    "user_base": "ou=people,dc=example,dc=org",
    "group_base": "ou=groups,dc=example,dc=org",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_the_ldap_check_is_not_a_port_scanner(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5: one answer whatever failed, no faster than a timeout; details for the operator."""
    monkeypatch.setattr(directory_federation, "LDAP_CHECK_FLOOR_S", 0.6, raising=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # open, but never answers LDAP
    try:
        answers = {}
        for label, url in (
            ("refused", f"ldap://127.0.0.1:{_closed_port()}"),
            ("silent", f"ldap://127.0.0.1:{listener.getsockname()[1]}"),
            ("tls", f"ldaps://127.0.0.1:{listener.getsockname()[1]}"),
        ):
            started = time.monotonic()
            r = plat.client.put(
                "/v1/identity/ldap", json={**LDAP_BODY, "url": url}, headers=plat.admin
            )
            elapsed = time.monotonic() - started
            assert r.status_code == 422, r.text
            assert elapsed >= 0.6, (label, elapsed)
            body = r.json()
            answers[label] = (body["detail"], body["errors"])
    finally:
        listener.close()
    assert len(set(map(repr, answers.values()))) == 1, answers
    text = repr(list(answers.values()))
    for leak in ("connection refused", "timed out", "certificate", "ssl", "tls", "127.0.0.1"):
        assert leak not in text.lower(), text
    # The details are in a system-level audit event: not in the tenant's own audit log.
    own = plat.client.get("/v1/audit?action=ldap.check", headers=plat.admin).json()["items"]
    assert own == []
    everything = plat.client.get(
        "/v1/audit?action=ldap.check&all_tenants=true", headers=plat.admin
    ).json()["items"]
    assert len(everything) == 3 and all(e["detail"]["error"] for e in everything)


def test_the_ldap_check_is_rate_limited(plat: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_federation, "LDAP_CHECK_FLOOR_S", 0.0, raising=False)
    limiter = RateLimiter(rate_per_s=0.01, burst=2)
    monkeypatch.setattr(routes_directory, "LDAP_CHECKS", limiter, raising=False)
    url = f"ldap://127.0.0.1:{_closed_port()}"
    codes = []
    for _ in range(3):
        r = plat.client.put("/v1/identity/ldap", json={**LDAP_BODY, "url": url}, headers=plat.admin)
        codes.append(r.status_code)
    assert codes == [422, 422, 429]
    assert int(r.headers["retry-after"]) >= 1
    # Saving without a check is not limited.
    r = plat.client.put(
        "/v1/identity/ldap", json={**LDAP_BODY, "url": url, "check": False}, headers=plat.admin
    )
    assert r.status_code == 200, r.text


def test_ldap_settings_may_name_only_hosts_the_operator_allows(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CELLPLANE_LDAP_ALLOWED_HOSTS", raising=False)  # the default policy
    for url in (
        "ldap://127.0.0.1:389",  # this machine
        "ldap://localhost",
        "ldap://169.254.169.254",  # link-local: cloud metadata
        "ldap://[::1]:636",
        "ldap://192.0.2.10:22",  # not an LDAP port
    ):
        r = plat.client.put(
            "/v1/identity/ldap", json={**LDAP_BODY, "url": url, "check": False}, headers=plat.admin
        )
        assert r.status_code == 422, (url, r.text)
        assert "CELLPLANE_LDAP_ALLOWED_HOSTS" in r.text
    ok = plat.client.put(
        "/v1/identity/ldap",
        json={**LDAP_BODY, "url": "ldaps://192.0.2.10", "check": False},
        headers=plat.admin,
    )
    assert ok.status_code == 200, ok.text
    monkeypatch.setenv("CELLPLANE_LDAP_ALLOWED_HOSTS", "ldap.example.org, 10.0.0.0/8:10389")
    for url, code in (
        ("ldaps://ldap.example.org", 200),
        ("ldap://10.1.2.3:10389", 200),
        ("ldap://10.1.2.3:389", 422),
        ("ldaps://192.0.2.10", 422),
    ):
        r = plat.client.put(
            "/v1/identity/ldap", json={**LDAP_BODY, "url": url, "check": False}, headers=plat.admin
        )
        assert r.status_code == code, (url, r.text)


def test_user_names_are_case_insensitive(plat: Platform) -> None:
    """`ADMIN` beside `admin` was once two users: names are kept and compared in lower case."""
    before = counts(plat)
    r = post(plat, "/v1/users", {"name": "ADMIN"})
    assert r.status_code == 409, r.text
    assert counts(plat) == before
    pw = "correct horse battery staple"
    u = post(plat, "/v1/users", {"name": "Dev.One", "password": pw}).json()
    assert u["name"] == "dev.one"
    for ref in ("dev.one", "DEV.ONE", "Dev.One", u["id"]):
        got = plat.client.get(f"/v1/users/{ref}", headers=plat.admin)
        assert got.status_code == 200 and got.json()["id"] == u["id"], ref
    grant = post(plat, "/v1/role-assignments", {"role": "project-viewer", "user": "DEV.one"})
    assert grant.status_code == 201, grant.text
    r = plat.client.post(
        "/identity/default/token",
        data={
            "grant_type": "password",
            "client_id": "cellplane-cli",
            "username": "Dev.ONE",
            "password": pw,
        },
        headers={"host": "127.0.0.1"},
    )
    assert r.status_code == 200, r.text
    me = plat.client.get(
        "/v1/whoami",
        headers={"Authorization": f"Bearer {r.json()['access_token']}", "host": "127.0.0.1"},
    )
    assert me.status_code == 200 and me.json()["name"] == "dev.one"
