"""The portal's newer pages in real headless Chromium against a real server and agent: a
cluster created from an uploaded spec file, resized, stopped, exported and deleted through the
confirmation page; the tasks page; an image upload with its progress bar; the operators'
directory and audit log; and what a viewer sees of them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from browser_support import shot, sign_in

from cellplane.testing.busybox import build_busybox_archive
from cellplane.testing.harness import Deployment

pytestmark = pytest.mark.integration


def _basic_spec(n: int) -> dict[str, Any]:
    group = {"name": "w", "roles": ["basic"], "instanceNum": n, "cpuNum": 1}
    return {"nodeGroups": [{**group, "memCapacityMB": 64, "storage": {"sizeGB": 1}}]}


def test_developer_runs_a_cluster_from_a_spec_file_through_its_life(
    deployment: Deployment, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url = deployment.url
    bad, good = tmp_path / "bad.json", tmp_path / "basic.json"
    bad.write_text('{"nodeGroups": "three"}')
    good.write_text(json.dumps(_basic_spec(1)))
    sign_in(page, url, "dev")
    page.get_by_role("link", name="Clusters").click()
    page.get_by_label("Cluster name").fill("bx")
    page.get_by_label("Serengeti spec file (JSON)").set_input_files(str(bad))
    page.get_by_role("button", name="Create from the file").click()
    expect(page.locator("#spec-error")).to_contain_text("nodeGroups")  # at the file's field
    expect(page.get_by_label("Cluster name")).to_have_value("bx")
    page.get_by_label("Serengeti spec file (JSON)").set_input_files(str(good))
    page.get_by_role("button", name="Create from the file").click()
    page.wait_for_url(re.compile(r".*/portal/clusters/[^/]+$"))
    expect(page.locator("#cluster-state")).to_have_text("RUNNING", timeout=120_000)

    page.get_by_label("Nodes").fill("2")
    page.get_by_role("button", name="Resize").click()
    expect(page.locator("#nodes tbody tr")).to_have_count(2, timeout=60_000)
    expect(page.locator("#cluster-state")).to_have_text("RUNNING", timeout=120_000)
    page.reload()  # the heading's group sizes are not live; the status block is
    expect(page.get_by_text("w x2")).to_be_visible()
    shot(page, "cluster-actions")

    with page.expect_download() as download:
        page.get_by_role("link", name="Export the spec").click()
    assert download.value.suggested_filename == "bx.json"
    exported = json.loads(Path(download.value.path()).read_text())
    assert exported["nodeGroups"][0]["instanceNum"] == 2

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#cluster-state")).to_have_text("STOPPED", timeout=120_000)
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete cluster bx?")).to_be_visible()
    shot(page, "confirm-delete")
    page.get_by_role("button", name="Yes, delete bx").click()
    page.wait_for_url(re.compile(r".*/portal/projects/default/clusters$"))
    with deployment.client() as c:
        remaining = [x for x in c.list_clusters("default") if x["name"] == "bx"]
        assert remaining == [] or remaining[0]["state"] == "DELETING"

    # Every task of the project, filtered by state; live like the dashboard's.
    page.get_by_role("link", name="Tasks").click()
    expect(page.locator("#tasks")).to_contain_text("RESIZE_CLUSTER")
    page.get_by_label("State").select_option("COMPLETED")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#tasks")).to_contain_text("STOP_CLUSTER")
    expect(page.locator("#tasks .badge", has_text="ERROR")).to_have_count(0)
    shot(page, "tasks")


def test_operator_uploads_an_image_with_its_progress_and_reads_the_audit_log(
    deployment: Deployment, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    archive = build_busybox_archive(tmp_path)
    url = deployment.url
    sign_in(page, url, "ops")
    page.get_by_role("link", name="Images").click()
    page.get_by_label("Image name").fill("busybox")  # taken: refused at the name field
    page.get_by_label("Tarball").set_input_files(str(archive))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#image-name-error")).to_contain_text("already exists")
    expect(page.get_by_label("Image name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")  # it all went
    page.get_by_label("Image name").fill("bb2")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r".*/portal/images\?uploaded=bb2$"))
    expect(page.get_by_role("status")).to_have_text("Image bb2 uploaded.")
    expect(page.locator("#images")).to_contain_text("bb2")
    shot(page, "images")
    with deployment.client() as c:
        assert "bb2" in [i["name"] for i in c.list_images()["items"]]

    page.get_by_role("link", name="Directory").click()
    page.get_by_label("User name").fill("erin")
    page.get_by_role("button", name="Create user").click()
    expect(page.locator("#shown-once")).to_be_visible()
    page.get_by_label("Named").fill("erin")
    page.get_by_label("In project").fill("default")
    page.get_by_role("button", name="Assign").click()
    expect(page.locator("#assignments")).to_contain_text("user erin")
    shot(page, "directory")
    # Disabled through its confirmation page; the users table says so.
    page.get_by_role("link", name="Disable erin").click()
    expect(page.get_by_role("heading", name="Disable user erin?")).to_be_visible()
    page.get_by_role("button", name="Yes, disable erin").click()
    expect(page.locator("#users tr", has_text="erin")).to_contain_text("disabled")
    expect(page.get_by_role("link", name="Enable erin")).to_be_visible()
    with deployment.client() as c:
        assert c.get_user("erin")["disabled"] is True

    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").fill("user.create")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#audit tbody tr")
    expect(rows.first).to_contain_text("erin")  # newest first: the user just made
    assert set(rows.locator("td:nth-child(3)").all_inner_texts()) == {"user.create"}
    page.get_by_label("Action").fill("")
    page.get_by_label("Outcome").select_option("success")
    page.get_by_role("button", name="Filter").click()
    shot(page, "audit")


def test_a_viewer_sees_the_new_pages_without_a_button(deployment: Deployment, page: Any) -> None:
    from playwright.sync_api import expect

    url = deployment.url
    sign_in(page, url, "viewer")
    for link in ("Directory", "Audit", "Tenants"):
        expect(page.get_by_role("link", name=link, exact=True)).to_have_count(0)
    page.get_by_role("link", name="Tasks").click()
    expect(page.get_by_role("heading", name="Tasks of default")).to_be_visible()
    page.get_by_role("link", name="Images").click()
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    page.get_by_role("link", name="Clusters").click()
    expect(page.get_by_role("button", name="Create from the file")).to_have_count(0)
    resp = page.goto(f"{url}/portal/audit")
    assert resp is not None and resp.status == 403
