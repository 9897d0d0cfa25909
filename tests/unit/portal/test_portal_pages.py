"""The portal's pages against the in-process server: the wizard (API errors at the field), the
cells list, the quota form, the hosts' maintenance toggle, and what a viewer sees and may do."""

from __future__ import annotations

import re

from cellplane_platform_support import Platform
from portal_support import add_user, csrf_of, mount, sign_in


def _wizard(client: object, page_csrf: str, **fields: str) -> object:
    form = {"csrf": page_csrf, "key": "k" * 16, "restart": "never", **fields}
    return client.post("/portal/projects/default/cells/new", data=form)  # type: ignore[attr-defined]


def _error_of(page: str, field: str) -> str:
    m = re.search(rf'<p class="error" id="{field}-error" role="alert">([^<]*)</p>', page)
    return m.group(1) if m else ""


def test_the_wizard_shows_the_services_error_at_the_image_field(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    page = sign_in(client, "dev")
    r = _wizard(client, csrf_of(page), name="web", image="no-such-image", cpu="0.1", memory_mb="32")
    assert r.status_code == 422  # type: ignore[attr-defined]
    text = r.text  # type: ignore[attr-defined]
    assert "does not exist" in _error_of(text, "image")
    assert _error_of(text, "name") == ""
    assert 'id="image" name="image" type="text" value="no-such-image"' in text  # kept
    assert plat.cell_count() == 0


def test_the_wizard_shows_form_errors_at_their_fields(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    page = sign_in(client, "dev")
    r = _wizard(client, csrf_of(page), name="Bad_Name", image="busybox", cpu="lots", ports="80:x")
    text = r.text  # type: ignore[attr-defined]
    assert r.status_code == 422  # type: ignore[attr-defined]
    assert _error_of(text, "cpu") == "must be a number"
    assert "is not [host:]container" in _error_of(text, "ports")
    assert plat.cell_count() == 0


def test_the_wizard_creates_the_cell_once_per_form(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    page = sign_in(client, "dev")
    csrf = csrf_of(page)
    first = _wizard(client, csrf, name="web-1", image="host", cpu="0.1", memory_mb="32", env="A=1")
    assert first.status_code == 303, first.text  # type: ignore[attr-defined]
    again = _wizard(client, csrf, name="web-1", image="host", cpu="0.1", memory_mb="32", env="A=1")
    assert again.status_code == 303  # type: ignore[attr-defined]
    assert first.headers["location"] == again.headers["location"]  # type: ignore[attr-defined]
    assert plat.cell_count() == 1
    detail = client.get(first.headers["location"])  # type: ignore[attr-defined]
    assert detail.status_code == 200 and "Cell web-1" in detail.text
    listing = client.get("/portal/projects/default/cells?state=PENDING").text
    assert "web-1" in listing


def test_a_viewer_sees_no_buttons_and_cannot_change_anything(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "vic", "project-viewer")
    page = sign_in(client, "vic")
    csrf = csrf_of(page)
    cells = client.get("/portal/projects/default/cells").text
    assert "New cell" not in cells
    quota = client.get("/portal/projects/default/quota").text
    assert "Save quota" not in quota and '<form method="post" action="/portal/projects' not in quota
    volumes = client.get("/portal/projects/default/volumes").text
    assert "Create volume" not in volumes
    clusters = client.get("/portal/projects/default/clusters").text
    assert "Create cluster" not in clusters and "The catalog's distros" in clusters
    assert client.get("/portal/hosts").status_code == 403
    assert client.get("/portal/projects/default/cells/new").status_code == 403
    r = _wizard(client, csrf, name="web", image="busybox", cpu="0.1", memory_mb="32")
    assert r.status_code == 403  # type: ignore[attr-defined]
    r = client.post("/portal/projects/default/quota", data={"csrf": csrf, "cells": "1"})
    assert r.status_code == 403
    r = client.post(
        f"/portal/hosts/{plat.host_id}/maintenance", data={"csrf": csrf, "enabled": "true"}
    )
    assert r.status_code == 403
    assert plat.cell_count() == 0


def test_an_operator_sets_a_quota_and_toggles_maintenance(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "ops", "system-admin")
    page = sign_in(client, "ops")
    csrf = csrf_of(page)
    r = client.post(
        "/portal/projects/default/quota",
        data={"csrf": csrf, "cpu": "4", "memory_mb": "8192", "cells": "-1"},
    )
    assert r.status_code == 422 and "greater than or equal to 0" in _error_of(r.text, "cells")
    r = client.post(
        "/portal/projects/default/quota",
        data={"csrf": csrf, "cpu": "4", "memory_mb": "8192", "cells": "20"},
    )
    assert r.status_code == 303
    limits = plat.client.get("/v1/projects/default/quota", headers=plat.admin).json()["limits"]
    assert limits["cpu"] == 4 and limits["memory_mb"] == 8192 and limits["cells"] == 20
    hosts = client.get("/portal/hosts").text
    assert "Start maintenance of host-1" in hosts
    r = client.post(
        f"/portal/hosts/{plat.host_id}/maintenance", data={"csrf": csrf, "enabled": "true"}
    )
    assert r.status_code == 303
    host = plat.client.get(f"/v1/hosts/{plat.host_id}", headers=plat.admin).json()
    assert host["maintenance"] is True
    assert "End maintenance of host-1" in client.get("/portal/hosts").text


def test_a_member_stops_a_cell_from_its_page_and_a_viewer_cannot(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    add_user(plat, "vic", "project-viewer")
    r = plat.create_cell("job", cpu=0.1, memory_mb=32)
    assert r.status_code == 202, r.text
    cell_id = plat.cell_id("job")
    page = sign_in(client, "vic")
    detail = client.get(f"/portal/cells/{cell_id}").text
    assert "Stop</button>" not in detail and "Delete</button>" not in detail
    r = client.post(
        f"/portal/cells/{cell_id}/action", data={"csrf": csrf_of(page), "action": "stop"}
    )
    assert r.status_code == 403
    assert plat.cell(cell_id)["desired_state"] == "RUNNING"
    client.cookies.clear()
    page = sign_in(client, "dev")
    detail = client.get(f"/portal/cells/{cell_id}").text
    assert "Stop</button>" in detail
    r = client.post(
        f"/portal/cells/{cell_id}/action", data={"csrf": csrf_of(page), "action": "stop"}
    )
    assert r.status_code == 303 and r.headers["location"] == f"/portal/cells/{cell_id}"
    assert plat.cell(cell_id)["desired_state"] == "STOPPED"
    r = client.post(
        f"/portal/cells/{cell_id}/action", data={"csrf": csrf_of(page), "action": "explode"}
    )
    assert r.status_code == 422 and "must be one of" in r.text


def test_clusters_page_lists_distros_and_creates_a_cluster_with_its_nodes(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    page = sign_in(client, "dev")
    listing = client.get("/portal/projects/default/clusters")
    assert listing.status_code == 200 and "The catalog's distros" in listing.text
    distros = plat.client.get("/v1/catalog/distros", headers=plat.admin).json()["items"]
    assert all(d["name"] in listing.text for d in distros)
    form = {"csrf": csrf_of(page), "key": "c" * 16, "name": "zk", "distro": "no-such-distro"}
    r = client.post("/portal/projects/default/clusters", data=form)
    assert r.status_code == 422
    assert "no distro named &#39;no-such-distro&#39;" in r.text
    assert 'id="distro-error"' in r.text
    deployable = [d["name"] for d in distros if d["deployable"]]
    if not deployable:
        return  # nothing deployable on this machine: the refusal above is what can be shown
    r = client.post("/portal/projects/default/clusters", data={**form, "distro": deployable[0]})
    assert r.status_code == 303, r.text
    detail = client.get(r.headers["location"])
    assert detail.status_code == 200 and "Cluster zk" in detail.text
    assert 'id="nodes"' in detail.text and 'id="cluster-status"' in detail.text


def test_volumes_are_listed_created_with_errors_at_the_field_and_deleted(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    page = sign_in(client, "dev")
    csrf = csrf_of(page)
    r = client.post(
        "/portal/projects/default/volumes", data={"csrf": csrf, "name": "data", "size_gb": "2"}
    )
    assert r.status_code == 303
    listing = client.get("/portal/projects/default/volumes").text
    assert "<td>data</td>" in listing and "2 GB" in listing and "Delete data" in listing
    r = client.post(
        "/portal/projects/default/volumes", data={"csrf": csrf, "name": "data", "size_gb": "1"}
    )
    assert r.status_code == 422 and "already exists" in r.text and 'id="name-error"' in r.text
    r = client.post(
        "/portal/projects/default/volumes", data={"csrf": csrf, "name": "x", "size_gb": "0"}
    )
    assert r.status_code == 422 and 'id="size_gb-error"' in r.text
    (vol,) = plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"]
    r = client.post(f"/portal/volumes/{vol['id']}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 303 and r.headers["location"] == "/portal/projects/default/volumes"
    assert plat.client.get("/v1/projects/default/volumes", headers=plat.admin).json()["items"] == []


def test_the_dashboard_shows_recent_tasks_with_their_progress(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    assert plat.create_cell("job", cpu=0.1, memory_mb=32).status_code == 202
    page = sign_in(client, "dev")
    assert 'data-sse="/portal/projects/default/tasks/events"' in page
    assert re.search(r'<a href="/portal/cells/[^"]+">job</a>', page)
    assert 'aria-label="Progress of CREATE_CELL"' in page
