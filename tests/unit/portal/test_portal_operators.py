"""The operators' pages against the in-process server: tenants (create with the admin's password
shown once, delete after the confirmation), projects, the directory (users, groups, clients,
role assignments), the audit log's filters and pages, certificates; and what a viewer sees."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cellplane_platform_support import Platform
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from portal_support import add_user, csrf_of, mount, sign_in
from sqlalchemy import select

from cellplane.services import audit
from cellplane.state.models import Tenant


def _error_of(page: str, fid: str) -> str:
    m = re.search(rf'<p class="error" id="{fid}-error" role="alert">([^<]*)</p>', page)
    return html.unescape(m.group(1)) if m else ""


def _alert(page: str) -> str:
    m = re.search(r'<div class="error" role="alert">(.*?)</div>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


def test_a_system_admin_creates_and_deletes_a_tenant_through_the_confirmation(
    plat: Platform,
) -> None:
    client = mount(plat)
    add_user(plat, "ops", "system-admin")
    csrf = csrf_of(sign_in(client, "ops"))
    page = client.get("/portal/tenants").text
    assert "<td>default</td>" in page and "Create tenant" in page
    r = client.post("/portal/tenants", data={"csrf": csrf, "name": "Bad_Name"})
    assert r.status_code == 422 and _error_of(r.text, "name")
    r = client.post("/portal/tenants", data={"csrf": csrf, "name": "acme", "admin": "boss"})
    assert r.status_code == 201
    password = re.search(r'<code id="admin-password">([^<]+)</code>', r.text)
    assert password is not None and len(password.group(1)) >= 18
    again = client.get("/portal/tenants").text  # shown once: not on the next page
    assert password.group(1) not in again and "<td>acme</td>" in again
    r = client.post("/portal/tenants", data={"csrf": csrf, "name": "acme"})
    assert r.status_code == 422 and "already exists" in _alert(r.text)
    r = client.post("/portal/tenants/acme/delete", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/portal/tenants/acme/delete"
    confirm = client.get("/portal/tenants/acme/delete").text
    assert "Delete tenant acme?" in confirm
    r = client.post("/portal/tenants/acme/delete", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 303
    names = [t["name"] for t in plat.client.get("/v1/tenants", headers=plat.admin).json()["items"]]
    assert "acme" not in names


def test_projects_are_listed_and_created_with_errors_at_the_field(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    csrf = csrf_of(sign_in(client, "boss"))
    r = client.post("/portal/projects", data={"csrf": csrf, "name": "web"})
    assert r.status_code == 303
    page = client.get("/portal/projects").text
    assert '<a href="/portal/projects/web/">web</a>' in page
    r = client.post("/portal/projects", data={"csrf": csrf, "name": "web"})
    assert r.status_code == 422 and "already exists" in _alert(r.text)
    r = client.post("/portal/projects", data={"csrf": csrf, "name": "-x-"})
    assert r.status_code == 422 and _error_of(r.text, "name")


def test_the_directory_creates_users_groups_clients_and_assigns_roles(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    csrf = csrf_of(sign_in(client, "boss"))
    r = client.post("/portal/directory/users", data={"csrf": csrf, "name": "carol"})
    assert r.status_code == 201
    secret = re.search(r'<code id="shown-once">([^<]+)</code>', r.text)
    assert secret is not None and secret.group(1) not in client.get("/portal/directory").text
    r = client.post("/portal/directory/users", data={"csrf": csrf, "name": "carol"})
    assert r.status_code == 422 and "already exists" in _alert(r.text)

    assert (
        client.post("/portal/directory/groups", data={"csrf": csrf, "name": "devs"}).status_code
        == 303
    )
    form = {"csrf": csrf, "op": "add", "user": "nobody"}
    r = client.post("/portal/directory/groups/devs/members", data=form)
    assert r.status_code == 422 and "nobody" in _alert(r.text)
    r = client.post("/portal/directory/groups/devs/members", data={**form, "user": "carol"})
    assert r.status_code == 303
    assert "<td>carol</td>" in client.get("/portal/directory").text.replace(
        "<td>devs</td>\n    ", ""
    )

    r = client.post("/portal/directory/clients", data={"csrf": csrf, "name": "ci"})
    assert r.status_code == 201 and 'id="shown-once"' in r.text
    bad = {"csrf": csrf, "name": "app", "public": "true", "redirect_uris": "ftp://x"}
    r = client.post("/portal/directory/clients", data=bad)
    assert r.status_code == 422 and "redirect URIs must be" in _error_of(r.text, "client-uris")

    form = {"csrf": csrf, "role": "project-member", "kind": "user", "subject": "ghost"}
    r = client.post("/portal/directory/roles", data=form)
    assert r.status_code == 422 and "ghost" in _alert(r.text)
    r = client.post("/portal/directory/roles", data={**form, "role": "god", "subject": "carol"})
    assert r.status_code == 422 and "is not a tenant role" in _error_of(r.text, "assign-role")
    r = client.post(
        "/portal/directory/roles", data={**form, "subject": "carol", "project": "default"}
    )
    assert r.status_code == 303
    items = plat.client.get("/v1/role-assignments", headers=plat.admin).json()["items"]
    (mine,) = [a for a in items if a["subject"]["name"] == "carol"]
    assert mine["role"] == "project-member" and mine["project"] == "default"
    path = f"/portal/directory/roles/{mine['id']}/delete"
    assert client.post(path, data={"csrf": csrf}).headers["location"] == path
    assert "Unassign role project-member of user carol in project default?" in client.get(path).text
    assert client.post(path, data={"csrf": csrf, "confirm": "yes"}).status_code == 303
    items = plat.client.get("/v1/role-assignments", headers=plat.admin).json()["items"]
    assert not [a for a in items if a["subject"]["name"] == "carol"]


def _events(plat: Platform, n: int, action: str, at: datetime) -> None:
    with plat.svc.db.session() as s:
        tenant = s.scalar(select(Tenant.id).where(Tenant.name == "default"))
        for i in range(n):
            audit.record(
                s, tenant_id=tenant, actor="user:tester", action=action, target=f"t{i}",
                outcome="success" if i % 2 else "denied", source="", detail={},
                at=at + timedelta(seconds=i),
            )  # fmt: skip


def test_the_audit_log_filters_and_pages(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    old = datetime(2020, 1, 1, tzinfo=UTC)
    _events(plat, 60, "portal.test", old)
    sign_in(client, "boss")
    page = client.get("/portal/audit?action=portal.test").text
    assert page.count("<td>portal.test</td>") == 50
    older = re.search(r'<a href="/portal/audit\?([^"]+)" rel="next">', page)
    assert older is not None
    rest = client.get("/portal/audit?" + html.unescape(older.group(1))).text
    assert rest.count("<td>portal.test</td>") == 10 and 'rel="next"' not in rest
    denied = client.get("/portal/audit?action=portal.test&outcome=denied").text
    assert denied.count("<td>portal.test</td>") == 30
    window = client.get(
        "/portal/audit?action=portal.test&since=2020-01-01T00:00:10&until=2020-01-01T00:00:20"
    ).text
    assert window.count("<td>portal.test</td>") == 10
    assert "<td>t10</td>" in window and "<td>t20</td>" not in window
    r = client.get("/portal/audit?since=yesterday")
    assert r.status_code == 422 and "is not a time" in r.text
    r = client.get("/portal/audit?outcome=maybe")
    assert r.status_code == 422 and "must be one of success, failure, denied" in r.text


def _csr(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _issue(plat: Platform) -> dict[str, Any]:
    me = plat.client.get("/v1/whoami", headers=plat.admin).json()
    r = plat.client.post("/v1/certificates", json={"csr": _csr(me["subject"])}, headers=plat.admin)
    assert r.status_code == 201, r.text
    (cert,) = plat.client.get("/v1/certificates", headers=plat.admin).json()["items"]
    return dict(cert)


def test_certificates_are_listed_and_revoked_after_the_confirmation(plat: Platform) -> None:
    cert = _issue(plat)
    serial = cert["serial"]
    client = mount(plat)
    add_user(plat, "vic", "project-viewer")
    add_user(plat, "ops", "system-admin")
    vic = csrf_of(sign_in(client, "vic"))  # a viewer sees their own certificates: none
    page = client.get("/portal/certificates").text
    assert "No certificates." in page and serial not in page
    r = client.post(f"/portal/certificates/{serial}/revoke", data={"csrf": vic, "confirm": "yes"})
    assert r.status_code == 403
    client.cookies.clear()
    csrf = csrf_of(sign_in(client, "ops"))
    page = client.get("/portal/certificates").text
    assert serial in page and f'href="/portal/certificates/{serial}/revoke"' in page
    confirm = client.get(f"/portal/certificates/{serial}/revoke").text
    assert "Revoke certificate" in confirm and "Yes, revoke" in confirm
    r = client.post(f"/portal/certificates/{serial}/revoke", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 303
    (after,) = plat.client.get("/v1/certificates", headers=plat.admin).json()["items"]
    assert after["revoked_at"] is not None
    assert "revoked</span>" in client.get("/portal/certificates").text


def test_a_viewer_sees_none_of_the_operators_pages(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "vic", "project-viewer")
    csrf = csrf_of(sign_in(client, "vic"))
    page = client.get("/portal/projects/default/cells").text
    for link in ("Tenants", "Projects</a>", "Directory", "Audit"):
        assert link not in page.split("<main", 1)[0], link
    for path in ("/portal/tenants", "/portal/directory", "/portal/audit"):
        assert client.get(path).status_code == 403, path
    posts = (
        ("/portal/tenants", {"name": "x"}),
        ("/portal/projects", {"name": "x"}),
        ("/portal/directory/users", {"name": "x"}),
        ("/portal/directory/groups", {"name": "x"}),
        ("/portal/directory/clients", {"name": "x"}),
        ("/portal/directory/roles", {"role": "tenant-admin", "kind": "user", "subject": "vic"}),
    )
    for path, form in posts:
        assert client.post(path, data={"csrf": csrf, **form}).status_code == 403, path
    names = [p["name"] for p in plat.client.get("/v1/projects", headers=plat.admin).json()["items"]]
    assert names == ["default"]
