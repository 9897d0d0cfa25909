"""The portal in real headless Chromium against a real server and agent: sign in, create a cell
through the wizard (an error at its field first) and watch it run and log, an operator's quota
and maintenance toggle, a viewer who can change nothing, and logout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from browser_support import shot, sign_in

from cellplane.testing.harness import Deployment

pytestmark = pytest.mark.integration

GREETING = "hello-from-the-portal"


def test_developer_creates_a_cell_and_sees_it_running_with_its_logs(
    deployment: Deployment, page: Any
) -> None:
    from playwright.sync_api import expect

    url = deployment.url
    sign_in(page, url, "dev")
    expect(page.get_by_role("heading", name="Project default")).to_be_visible()
    expect(page.locator('tr[data-resource="cells"]')).to_be_visible()

    page.get_by_role("link", name="Cells").click()
    page.get_by_role("link", name="New cell").click()
    page.get_by_label("Name").fill("portal-web")
    page.get_by_label("Image").fill("no-such-image")
    page.get_by_label("CPU", exact=True).fill("0.05")
    page.get_by_label("Memory (MB)").fill("32")
    command = f"sh -c \"echo {GREETING}; trap 'exit 0' TERM; sleep 600 & wait\""
    page.get_by_label("Command").fill(command)
    page.get_by_role("button", name="Create cell").click()
    # The service's error, shown at the image field (and only there); the rest is kept.
    image_error = page.locator("#image-error")
    expect(image_error).to_contain_text("image 'no-such-image' does not exist")
    expect(page.get_by_label("Image")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#name-error")).to_have_count(0)
    expect(page.get_by_label("Command")).to_have_value(command)
    shot(page, "wizard-error")

    page.get_by_label("Image").fill("busybox")
    page.get_by_role("button", name="Create cell").click()
    page.wait_for_url(re.compile(r".*/portal/cells/[^/]+$"))
    expect(page.get_by_role("heading", name="Cell portal-web")).to_be_visible()
    # Live: the status block and the logs come over server-sent events, no reload.
    expect(page.locator("#cell-state")).to_have_text("RUNNING", timeout=90_000)
    expect(page.locator("#logs")).to_contain_text(GREETING, timeout=30_000)
    shot(page, "cell")

    page.get_by_role("link", name="Cells").click()
    row = page.locator("#cells tr", has_text="portal-web")
    expect(row.locator(".badge")).to_have_text("RUNNING")
    shot(page, "cells")


def test_operator_sets_a_quota_and_toggles_maintenance(deployment: Deployment, page: Any) -> None:
    from playwright.sync_api import expect

    url = deployment.url
    sign_in(page, url, "ops")
    page.get_by_role("link", name="Quota").click()
    page.get_by_role("textbox", name="Cells").fill("25")
    page.get_by_label("CPU (cores)").fill("8")
    page.get_by_role("button", name="Save quota").click()
    expect(page.get_by_role("status")).to_have_text("Quota saved.")
    expect(page.get_by_role("textbox", name="Cells")).to_have_value("25")
    expect(page.locator('tr[data-resource="cells"]')).to_contain_text("of 25")
    shot(page, "quota")
    page.get_by_role("link", name="Dashboard").click()  # the bars now have a limit to fill
    expect(page.locator('tr[data-resource="cells"]')).to_contain_text("of 25")
    shot(page, "dashboard")
    with deployment.client() as c:
        assert c.get_project_quota("default")["limits"]["cells"] == 25

    page.get_by_role("link", name="Hosts").click()
    name = deployment.agent_name
    page.get_by_role("button", name=f"Start maintenance of {name}").click()
    expect(page.get_by_role("button", name=f"End maintenance of {name}")).to_be_visible()
    expect(page.locator("#hosts h2", has_text=name)).to_contain_text("MAINTENANCE")
    shot(page, "hosts")
    with deployment.client() as c:
        (host,) = [h for h in c.list_hosts()["items"] if h["name"] == name]
        assert host["maintenance"] is True
    page.get_by_role("button", name=f"End maintenance of {name}").click()
    expect(page.get_by_role("button", name=f"Start maintenance of {name}")).to_be_visible()
    with deployment.client() as c:
        (host,) = [h for h in c.list_hosts()["items"] if h["name"] == name]
        assert host["maintenance"] is False


def test_a_viewer_sees_nothing_to_change(deployment: Deployment, page: Any) -> None:
    from playwright.sync_api import expect

    url = deployment.url
    sign_in(page, url, "viewer")
    expect(page.get_by_role("link", name="Hosts")).to_have_count(0)
    page.get_by_role("link", name="Cells").click()
    expect(page.get_by_role("heading", name="Cells of default")).to_be_visible()
    expect(page.get_by_role("link", name="New cell")).to_have_count(0)
    page.get_by_role("link", name="Quota").click()
    expect(page.get_by_role("button", name="Save quota")).to_have_count(0)
    # The only button a viewer has is signing out.
    assert page.get_by_role("button").all_inner_texts() == ["Go", "Sign out"]
    # Going to the wizard by URL is refused, not shown.
    resp = page.goto(f"{url}/portal/projects/default/cells/new")
    assert resp is not None and resp.status == 403


def test_developer_creates_a_zookeeper_cluster_and_watches_its_nodes_get_ready(
    deployment: Deployment, page: Any
) -> None:
    from playwright.sync_api import expect

    if not Path("/usr/share/java/zookeeper.jar").exists():
        pytest.skip("Debian's zookeeper is not installed (make deps)")
    url = deployment.url
    sign_in(page, url, "dev")
    page.get_by_role("link", name="Clusters").click()
    page.get_by_label("Name", exact=True).fill("zk")
    page.get_by_label("Distro", exact=True).select_option("zookeeper")
    page.get_by_role("button", name="Create cluster").click()
    page.wait_for_url(re.compile(r".*/portal/clusters/[^/]+$"))
    # The nodes' rows update live (SSE) as the executor brings each one up.
    expect(page.locator("#cluster-state")).to_have_text("RUNNING", timeout=300_000)
    rows = page.locator("#nodes tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):
        expect(rows.nth(i).locator(".badge")).to_have_text("SERVICE_READY")
    shot(page, "cluster")
    with deployment.client() as c:
        (cluster,) = c.list_clusters("default")
        c.delete_cluster(cluster["id"])


def test_logout_signs_out_of_the_portal_and_the_issuer(deployment: Deployment, page: Any) -> None:
    from playwright.sync_api import expect

    url = deployment.url
    sign_in(page, url, "dev")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/portal/signed-out.*"))
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto(f"{url}/portal/projects/default/cells")
    expect(page.get_by_label("Tenant")).to_be_visible()  # back at the login page
    shot(page, "login")
