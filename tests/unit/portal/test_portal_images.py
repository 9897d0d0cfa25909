"""The portal's image upload: the raw body sent by the page's script (answered in JSON, errors
by field), the multipart form without JS (answered with the page), the server's image limit and
the CSRF check; a viewer sees no upload form and is refused."""

from __future__ import annotations

import re
from pathlib import Path

from cellplane_platform_support import Platform
from portal_support import add_user, csrf_of, mount, sign_in

TAR = {"Content-Type": "application/x-tar"}


def _names(plat: Platform) -> list[str]:
    return [i["name"] for i in plat.client.get("/v1/images", headers=plat.admin).json()["items"]]


def _leftovers(plat: Platform) -> list[str]:
    return sorted(p.name for p in plat.svc.images_dir.glob(".upload-*"))


def test_the_raw_upload_registers_the_image_and_answers_errors_by_field(
    plat: Platform, busybox_archive: Path
) -> None:
    client = mount(plat)
    add_user(plat, "ops", "system-admin")
    sign_in(client, "ops")
    page = client.get("/portal/images").text
    assert "data-upload" in page and '<progress id="upload-progress"' in page
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    body = busybox_archive.read_bytes()
    r = client.post("/portal/images/upload?name=bb", content=body, headers=TAR)
    assert r.status_code == 403  # no CSRF token
    headers = {**TAR, "X-CSRF-Token": csrf}
    r = client.post("/portal/images/upload?name=bb", content=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "bb" and r.json()["refs"] == ["busybox:latest"]
    assert "bb" in _names(plat) and "<td>bb</td>" in client.get("/portal/images").text
    r = client.post("/portal/images/upload?name=bb", content=body, headers=headers)
    assert r.status_code == 409 and "already exists" in r.json()["errors"]["name"][0]
    r = client.post("/portal/images/upload?name=Bad Name!", content=body, headers=headers)
    assert r.status_code == 422 and list(r.json()["errors"]) == ["name"]
    r = client.post("/portal/images/upload?name=junk", content=b"not a tar" * 99, headers=headers)
    assert r.status_code == 422 and "not a readable image archive" in r.json()["errors"]["file"][0]
    plat.svc.max_image_bytes = 4096
    r = client.post("/portal/images/upload?name=big", content=body, headers=headers)
    assert r.status_code == 413
    assert "larger than this server's limit of 4096 bytes" in r.json()["errors"]["file"][0]
    assert "junk" not in _names(plat) and "big" not in _names(plat)
    assert _leftovers(plat) == []


def test_the_form_without_javascript_uploads_as_multipart(
    plat: Platform, busybox_archive: Path
) -> None:
    client = mount(plat)
    add_user(plat, "ops", "system-admin")
    csrf = csrf_of(sign_in(client, "ops"))
    tarball = ("bb.tar", busybox_archive.read_bytes(), "application/x-tar")
    r = client.post(
        "/portal/images/upload", data={"csrf": csrf, "name": ""}, files={"file": tarball}
    )
    assert r.status_code == 422
    assert 'id="image-name-error" role="alert">' in r.text and 'aria-invalid="true"' in r.text
    r = client.post(
        "/portal/images/upload", data={"csrf": csrf, "name": "bb"}, files={"file": tarball}
    )
    assert r.status_code == 303 and r.headers["location"] == "/portal/images?uploaded=bb"
    assert "Image bb uploaded." in client.get(r.headers["location"]).text
    assert "bb" in _names(plat) and _leftovers(plat) == []


def test_a_viewer_sees_the_images_but_cannot_upload(plat: Platform, busybox_archive: Path) -> None:
    client = mount(plat)
    add_user(plat, "vic", "project-viewer")
    csrf = csrf_of(sign_in(client, "vic"))
    page = client.get("/portal/images")
    assert page.status_code == 200 and "<td>host</td>" in page.text
    assert "data-upload" not in page.text and "Upload an image" not in page.text
    headers = {**TAR, "X-CSRF-Token": csrf}
    body = busybox_archive.read_bytes()
    r = client.post("/portal/images/upload?name=bb", content=body, headers=headers)
    assert r.status_code == 403 and "bb" not in _names(plat)
