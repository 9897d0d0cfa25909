"""The operators' delete, disable and enable in the portal: users, groups, clients and projects,
each through its confirmation page (a post without it changes nothing), CSRF-checked, audited as
the API audits it, the API's refusal shown on the page; a viewer sees no such button and is
refused every one of them."""

from __future__ import annotations

import html
import re
from typing import Any

from cellplane_platform_support import Platform
from fastapi.testclient import TestClient
from portal_support import BASE, PASSWORD, add_user, csrf_of, hidden, mount, sign_in
from sqlalchemy import select

from cellplane.state.identity_models import AuditEvent


def _alert(page: str) -> str:
    m = re.search(r'<div class="error" role="alert">(.*?)</div>', page, re.S)
    return html.unescape(m.group(1)) if m else ""


def _user(plat: Platform, name: str) -> dict[str, Any]:
    r = plat.client.get(f"/v1/users/{name}", headers=plat.admin)
    return dict(r.json()) if r.status_code == 200 else {}


def _actions(plat: Platform, target: str) -> set[str]:
    with plat.svc.db.reader() as s:
        return set(s.scalars(select(AuditEvent.action).where(AuditEvent.target == target)))


def _browser(plat: Platform) -> Any:
    """A second browser (its own cookies) on the same server."""
    return TestClient(plat.client.app, base_url=BASE, follow_redirects=False)


def _issuer_answer(client: Any, user: str) -> int:
    """The issuer's answer to the user's password on its login form (302: signed in, 400:
    refused)."""
    r = client.get("/portal/login")
    form = {"csrf": csrf_of(r.text), "tenant": "default", "next": "/portal/"}
    r = client.get(client.post("/portal/login", data=form).headers["location"])
    action = html.unescape(re.search(r'action="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
    r = client.post(action, data={**hidden(r.text), "username": user, "password": PASSWORD})
    return int(r.status_code)


def _confirm(client: Any, path: str, csrf: str, title: str) -> Any:
    """The post without `confirm` is sent to the page; the page names the action; its form
    does it."""
    r = client.post(path, data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == path, r.text
    page = client.get(path)
    assert page.status_code == 200 and title in page.text, page.text
    assert f'<form method="post" action="{path}">' in page.text
    return client.post(path, data={"csrf": csrf_of(page.text), "confirm": "yes"})


def test_a_tenant_admin_disables_enables_and_deletes_a_user(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    add_user(plat, "carol", "project-member", "default")
    csrf = csrf_of(sign_in(client, "boss"))
    page = client.get("/portal/directory").text
    assert 'href="/portal/directory/users/carol/disable">Disable carol</a>' in page
    assert 'href="/portal/directory/users/carol/delete">Delete carol</a>' in page
    assert "Disable boss" not in page and "Delete boss" not in page  # not yourself

    carol = _browser(plat)  # carol is signed in, in a browser of her own
    sign_in(carol, "carol")
    path = "/portal/directory/users/carol/disable"
    r = client.post(path, data={"csrf": csrf})
    assert r.status_code == 303 and _user(plat, "carol")["disabled"] is False
    r = _confirm(client, path, csrf, "Disable user carol?")
    assert r.status_code == 303 and r.headers["location"] == "/portal/directory"
    assert _user(plat, "carol")["disabled"] is True
    assert "user.update" in _actions(plat, "carol")
    r = carol.get("/portal/projects/default/cells")  # her session ends at once
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    assert "This cannot be undone" not in client.get(path).text  # disable can be
    page = client.get("/portal/directory").text
    assert 'href="/portal/directory/users/carol/enable">Enable carol</a>' in page

    assert _issuer_answer(_browser(plat), "carol") == 400  # refused, as a wrong password is

    r = _confirm(client, "/portal/directory/users/carol/enable", csrf, "Enable user carol?")
    assert r.status_code == 303 and _user(plat, "carol")["disabled"] is False
    assert _issuer_answer(_browser(plat), "carol") == 302  # signs in again

    r = _confirm(client, "/portal/directory/users/carol/delete", csrf, "Delete user carol?")
    assert r.status_code == 303 and _user(plat, "carol") == {}
    assert "user.delete" in _actions(plat, "carol")
    assert client.get("/portal/directory/users/carol/delete").status_code == 404


def test_the_apis_refusal_is_shown_on_the_confirmation_page(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    csrf = csrf_of(sign_in(client, "boss"))
    for verb in ("delete", "disable"):
        path = f"/portal/directory/users/boss/{verb}"
        r = client.post(path, data={"csrf": csrf, "confirm": "yes"})
        assert r.status_code == 409, r.text
        assert f"you cannot {verb} yourself" in _alert(r.text)
    assert _user(plat, "boss")["disabled"] is False
    r = client.post("/portal/directory/users/nobody/delete", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 404
    r = client.post("/portal/directory/users/admin/delete", data={"confirm": "yes"})
    assert r.status_code == 403 and _user(plat, "admin")  # no CSRF token: nothing happens


def test_groups_and_clients_are_deleted_through_their_confirmation(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    csrf = csrf_of(sign_in(client, "boss"))
    assert client.post("/portal/directory/groups", data={"csrf": csrf, "name": "devs"}).status_code
    r = client.post("/portal/directory/clients", data={"csrf": csrf, "name": "ci"})
    assert r.status_code == 201
    (ci,) = [
        x
        for x in plat.client.get("/v1/clients", headers=plat.admin).json()["items"]
        if x["name"] == "ci"
    ]
    page = client.get("/portal/directory").text
    assert 'href="/portal/directory/groups/devs/delete">Delete group devs</a>' in page
    client_path = f"/portal/directory/clients/{ci['client_id']}/delete"
    assert f'href="{client_path}">Delete client ci</a>' in page

    r = _confirm(client, "/portal/directory/groups/devs/delete", csrf, "Delete group devs?")
    assert r.status_code == 303
    assert plat.client.get("/v1/groups/devs", headers=plat.admin).status_code == 404
    assert "group.delete" in _actions(plat, "devs")
    r = _confirm(client, client_path, csrf, f"Delete client ci ({ci['client_id']})?")
    assert r.status_code == 303
    assert plat.client.get(f"/v1/clients/{ci['client_id']}", headers=plat.admin).status_code == 404
    assert "client.delete" in _actions(plat, "ci")


def test_a_project_is_deleted_from_the_portal_once_empty(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "boss", "tenant-admin")
    csrf = csrf_of(sign_in(client, "boss"))
    assert client.post("/portal/projects", data={"csrf": csrf, "name": "web"}).status_code == 303
    r = plat.client.post("/v1/projects/web/volumes", json={"name": "data"}, headers=plat.admin)
    assert r.status_code == 201
    page = client.get("/portal/projects").text
    assert 'href="/portal/projects/web/delete">Delete project web</a>' in page
    assert "Delete project default" not in page
    r = _confirm(client, "/portal/projects/web/delete", csrf, "Delete project web?")
    assert r.status_code == 409 and "volumes (data)" in _alert(r.text)
    names = [p["name"] for p in plat.client.get("/v1/projects", headers=plat.admin).json()["items"]]
    assert "web" in names
    vol = plat.client.get("/v1/projects/web/volumes", headers=plat.admin).json()["items"][0]
    assert plat.client.delete(f"/v1/volumes/{vol['id']}", headers=plat.admin).status_code == 204
    r = client.post("/portal/projects/web/delete", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 303 and r.headers["location"] == "/portal/projects"
    names = [p["name"] for p in plat.client.get("/v1/projects", headers=plat.admin).json()["items"]]
    assert names == ["default"]
    assert "project.delete" in _actions(plat, "web")


def test_a_viewer_gets_no_button_and_no_action(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "vic", "project-viewer", "default")
    add_user(plat, "carol", "project-member", "default")
    assert plat.client.post("/v1/projects", json={"name": "web"}, headers=plat.admin).status_code
    assert plat.client.post("/v1/groups", json={"name": "devs"}, headers=plat.admin).status_code
    csrf = csrf_of(sign_in(client, "vic"))
    r = client.get("/portal/projects")
    assert r.status_code == 200 and "/delete" not in r.text
    for path in (
        "/portal/directory/users/carol/delete",
        "/portal/directory/users/carol/disable",
        "/portal/directory/groups/devs/delete",
        "/portal/projects/web/delete",
    ):
        assert client.get(path).status_code == 403, path
        r = client.post(path, data={"csrf": csrf, "confirm": "yes"})
        assert r.status_code == 403, path
    assert _user(plat, "carol")["disabled"] is False
    assert plat.client.get("/v1/groups/devs", headers=plat.admin).status_code == 200
    names = [p["name"] for p in plat.client.get("/v1/projects", headers=plat.admin).json()["items"]]
    assert "web" in names
