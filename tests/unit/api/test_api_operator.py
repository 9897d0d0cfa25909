"""Operator API: images (upload, refusal, deletion rules), flavors, host maintenance, system."""

from __future__ import annotations

from pathlib import Path

import httpx
from cellplane_platform_support import Platform

from cellplane.state.db import Database

TAR = {"Content-Type": "application/x-tar"}


def _upload(plat: Platform, data: bytes, name: str = "busybox") -> httpx.Response:
    return plat.client.post(f"/v1/images?name={name}", content=data, headers={**plat.admin, **TAR})


def _images(plat: Platform) -> list[str]:
    r = plat.client.get("/v1/images", headers=plat.admin)
    assert r.status_code == 200
    return [i["name"] for i in r.json()["items"]]


def _image_files(plat: Platform) -> list[str]:
    return sorted(p.name for p in plat.svc.images_dir.iterdir())


# --- images ---


def test_upload_busybox(plat: Platform, busybox_archive: Path) -> None:
    data = busybox_archive.read_bytes()
    r = plat.client.post("/v1/images?name=busybox", content=data, headers={**plat.admin, **TAR})
    assert r.status_code == 201, r.text
    img = r.json()
    assert r.headers["location"] == f"/v1/images/{img['id']}"
    assert img["name"] == "busybox" and img["kind"] == "archive"
    assert img["refs"] == ["busybox:latest"]
    assert img["size_bytes"] == len(data)
    assert _images(plat) == ["host", "busybox"]
    assert _image_files(plat) == [f"{img['id']}.tar"]
    by_name = plat.client.get("/v1/images/busybox", headers=plat.admin).json()
    assert by_name["id"] == img["id"]
    content = plat.client.get(f"/v1/images/{img['id']}/content", headers=plat.admin)
    assert content.status_code == 200 and content.content == data
    agent = plat.client.get(
        f"/v1/agent/hosts/{plat.host_id}/images/{img['id']}/content", headers=plat.agent
    )
    assert agent.status_code == 200 and agent.content == data
    # The host image has no content to download.
    r = plat.client.get("/v1/images/host/content", headers=plat.admin)
    assert r.status_code == 404


def test_garbage_is_refused_and_nothing_is_stored(plat: Platform, busybox_archive: Path) -> None:
    ok = _upload(plat, busybox_archive.read_bytes()).json()
    before, files = _images(plat), _image_files(plat)
    for body in (b"this is not a tarball" * 50, b""):
        r = plat.client.post("/v1/images?name=junk", content=body, headers={**plat.admin, **TAR})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["field"] == "body"
    assert _images(plat) == before
    assert _image_files(plat) == files == [f"{ok['id']}.tar"]


def test_upload_name_rules(plat: Platform, busybox_archive: Path) -> None:
    data = busybox_archive.read_bytes()
    r = plat.client.post("/v1/images", content=data, headers={**plat.admin, **TAR})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    r = plat.client.post("/v1/images?name=a/b", content=data, headers={**plat.admin, **TAR})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
    assert _upload(plat, data).status_code == 201
    r = plat.client.post("/v1/images?name=busybox", content=data, headers={**plat.admin, **TAR})
    assert r.status_code == 409
    assert len(_image_files(plat)) == 1


def test_image_in_use_and_host_image_cannot_be_deleted(
    plat: Platform, busybox_archive: Path
) -> None:
    img = _upload(plat, busybox_archive.read_bytes()).json()
    cid = plat.create_cell("web", image="busybox", command=None).json()["entity"]["id"]
    assert plat.cell(cid)["image"] == "busybox"
    r = plat.client.delete("/v1/images/busybox", headers=plat.admin)
    assert r.status_code == 409 and "used by 1 cell" in r.json()["detail"]
    r = plat.client.delete("/v1/images/host", headers=plat.admin)
    assert r.status_code == 409 and r.json()["type"].endswith("/conflict")
    assert _images(plat) == ["host", "busybox"]
    # Once unused, it goes, and its file with it.
    assert plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).status_code == 202
    assert plat.client.delete(f"/v1/images/{img['id']}", headers=plat.admin).status_code == 204
    assert _images(plat) == ["host"]
    assert _image_files(plat) == []
    assert plat.client.get("/v1/images/busybox", headers=plat.admin).status_code == 404


def test_assignment_carries_the_engine_reference(plat: Platform, busybox_archive: Path) -> None:
    img = _upload(plat, busybox_archive.read_bytes()).json()
    plat.create_cell("web", image="busybox", command=None)
    plat.schedule()
    (cell,) = plat.assignments(0)["cells"]
    assert cell["image"]["id"] == img["id"] and cell["image"]["kind"] == "archive"
    assert cell["image"]["engine_ref"].startswith("sha256:")
    assert len(cell["image"]["engine_ref"]) == len("sha256:") + 64
    assert cell["command"] is None


# --- flavors ---


def test_flavors_crud(plat: Platform) -> None:
    names = [f["name"] for f in plat.client.get("/v1/flavors", headers=plat.admin).json()["items"]]
    assert names == ["SMALL", "MEDIUM", "LARGE", "EXTRA_LARGE"]
    body = {"name": "TINY", "cpu": 0.25, "memory_mb": 128, "disk_gb": 0}
    r = plat.client.post("/v1/flavors", json=body, headers=plat.admin)
    assert r.status_code == 201 and r.json() == body
    assert r.headers["location"] == "/v1/flavors/TINY"
    assert plat.client.post("/v1/flavors", json=body, headers=plat.admin).status_code == 409
    bad = plat.client.post("/v1/flavors", json={**body, "name": "X", "cpu": 0}, headers=plat.admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cpu"
    assert plat.client.get("/v1/flavors/TINY", headers=plat.admin).json() == body

    cid = plat.create_cell("tiny", flavor="TINY").json()["entity"]["id"]
    cell = plat.cell(cid)
    assert (cell["flavor"], cell["cpu"], cell["memory_mb"], cell["disk_gb"]) == (
        "TINY",
        0.25,
        128,
        0,
    )
    r = plat.client.delete("/v1/flavors/TINY", headers=plat.admin)
    assert r.status_code == 409 and "used by 1 cell" in r.json()["detail"]
    assert plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).status_code == 202
    assert plat.client.delete("/v1/flavors/TINY", headers=plat.admin).status_code == 204
    assert plat.client.get("/v1/flavors/TINY", headers=plat.admin).status_code == 404
    assert plat.client.delete("/v1/flavors/TINY", headers=plat.admin).status_code == 404


def test_explicit_size_and_disk(plat: Platform) -> None:
    cid = plat.create_cell("x", cpu=0.1, memory_mb=64, disk_gb=3).json()["entity"]["id"]
    cell = plat.cell(cid)
    assert (cell["flavor"], cell["cpu"], cell["memory_mb"], cell["disk_gb"]) == (None, 0.1, 64, 3)


# --- hosts ---


def test_maintenance_refuses_new_cells(plat: Platform) -> None:
    url = f"/v1/hosts/{plat.host_id}/maintenance"
    r = plat.client.post(url, json={"enabled": True}, headers=plat.admin)
    assert r.status_code == 200 and r.json()["state"] == "MAINTENANCE"
    (h,) = plat.client.get("/v1/hosts", headers=plat.admin).json()["items"]
    assert h["state"] == "MAINTENANCE" and h["maintenance"] is True
    r = plat.create_cell("web")
    assert r.status_code == 409
    assert r.json()["type"].endswith("/insufficient-capacity")
    assert "MAINTENANCE" in r.json()["detail"]
    assert plat.cell_count() == 0
    r = plat.client.post(url, json={"enabled": False}, headers=plat.admin)
    assert r.json()["state"] == "READY"
    assert plat.create_cell("web").status_code == 202
    r = plat.client.post(url, json={"enabled": "maybe"}, headers=plat.admin)
    assert r.status_code == 422
    r = plat.client.post(
        "/v1/hosts/hst-nope/maintenance", json={"enabled": True}, headers=plat.admin
    )
    assert r.status_code == 404


def test_host_by_name(plat: Platform) -> None:
    h = plat.client.get("/v1/hosts/host-1", headers=plat.admin).json()
    assert h["id"] == plat.host_id and h["address"] == "10.0.0.1"


# --- system ---


def test_health_and_readiness(plat: Platform) -> None:
    r = plat.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = plat.client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_readyz_without_a_database(plat: Platform, tmp_path: Path) -> None:
    real = plat.svc.db
    broken = Database(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}")
    plat.svc.db = broken
    try:
        r = plat.client.get("/readyz")
    finally:
        plat.svc.db = real
        broken.dispose()
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert plat.client.get("/healthz").status_code == 200


def test_metrics(plat: Platform) -> None:
    plat.create_cell("web")
    plat.client.get("/healthz")
    r = plat.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "cellplane_http_request_duration_seconds_bucket" in text
    assert 'route="/v1/projects/{project}/cells"' in text
    assert 'route="/healthz"' in text
    assert 'cellplane_cells{state="PENDING"} 1.0' in text
    plat.schedule()
    assert 'cellplane_cells{state="SCHEDULED"} 1.0' in plat.client.get("/metrics").text


def test_whoami(plat: Platform) -> None:
    r = plat.client.get("/v1/whoami", headers=plat.admin)
    body = r.json()
    assert body["subject"].startswith("usr-")
    assert body == {
        "subject": body["subject"],
        "name": "admin",
        "tenant": "default",
        "roles": ["system-admin"],
        "projects": {},
        "kind": "user",
    }


def test_task_events_of_a_finished_task(plat: Platform) -> None:
    cid = plat.create_cell("web").json()["entity"]["id"]
    task = plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).json()
    r = plat.client.get(f"/v1/tasks/{task['id']}/events", headers=plat.admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f.strip()]
    assert len(frames) == 1
    assert frames[0].startswith("event: task\ndata: ")
    assert '"state": "COMPLETED"' in frames[0]
