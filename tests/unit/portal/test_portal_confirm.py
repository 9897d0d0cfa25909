"""The confirmation step before a Delete: the Delete buttons are links to a page that names what
goes away; a delete posted without that page's `confirm=yes` is sent there and deletes nothing."""

from __future__ import annotations

from cellplane_platform_support import Platform
from portal_support import add_user, csrf_of, mount, sign_in


def test_a_cell_is_deleted_only_through_its_confirmation_page(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    assert plat.create_cell("job", cpu=0.1, memory_mb=32).status_code == 202
    cell_id = plat.cell_id("job")
    csrf = csrf_of(sign_in(client, "dev"))
    detail = client.get(f"/portal/cells/{cell_id}").text
    assert f'href="/portal/cells/{cell_id}/delete">Delete</a>' in detail
    r = client.post(f"/portal/cells/{cell_id}/action", data={"csrf": csrf, "action": "delete"})
    assert r.status_code == 303 and r.headers["location"] == f"/portal/cells/{cell_id}/delete"
    assert plat.cell(cell_id)["desired_state"] == "RUNNING"
    page = client.get(f"/portal/cells/{cell_id}/delete")
    assert page.status_code == 200
    assert "Delete cell job?" in page.text and "This cannot be undone." in page.text
    assert f'href="/portal/cells/{cell_id}">Cancel</a>' in page.text
    form = {"csrf": csrf_of(page.text), "action": "delete", "confirm": "yes"}
    r = client.post(f"/portal/cells/{cell_id}/action", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/portal/projects/default/cells"
    assert plat.client.get(f"/v1/cells/{cell_id}", headers=plat.admin).status_code == 404


def test_a_volume_delete_without_confirmation_deletes_nothing(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    add_user(plat, "vic", "project-viewer")
    csrf = csrf_of(sign_in(client, "dev"))
    form = {"csrf": csrf, "name": "data", "size_gb": "1"}
    assert client.post("/portal/projects/default/volumes", data=form).status_code == 303
    (vol,) = plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"]
    r = client.post(f"/portal/volumes/{vol['id']}/delete", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/portal/volumes/{vol['id']}/delete"
    page = client.get(r.headers["location"]).text
    assert "Delete volume data?" in page and "Everything stored on it goes away." in page
    listing = plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"]
    assert [v["name"] for v in listing] == ["data"]
    client.cookies.clear()
    vic = csrf_of(sign_in(client, "vic"))  # a viewer gets neither the page nor the delete
    assert "Delete data" not in client.get("/portal/projects/default/volumes").text
    assert client.get(f"/portal/volumes/{vol['id']}/delete").status_code == 403
    r = client.post(f"/portal/volumes/{vol['id']}/delete", data={"csrf": vic, "confirm": "yes"})
    assert r.status_code == 403
    listing = plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"]
    assert [v["name"] for v in listing] == ["data"]
