"""The portal's cluster operations against the in-process server: create from an uploaded spec
file (errors at the field), stop/start, resize (errors at the field), export as a download, and
delete only through the confirmation page; a viewer sees none of the buttons and is refused."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from cellplane_platform_support import Platform
from portal_support import add_user, csrf_of, mount, sign_in
from sqlalchemy import select

from cellplane.state.cluster_models import Cluster


def _spec(n: int = 2) -> dict[str, Any]:
    group = {
        "name": "w",
        "roles": ["basic"],
        "instanceNum": n,
        "cpuNum": 1,
        "memCapacityMB": 256,
        "storage": {"sizeGB": 1},
    }
    return {"nodeGroups": [group]}


def _upload(client: Any, csrf: str, name: str, content: bytes, filename: str = "s.json") -> Any:
    return client.post(
        "/portal/projects/default/clusters/upload",
        data={"csrf": csrf, "key": "u" * 16, "name": name},
        files={"spec": (filename, content, "application/json")},
    )


def _error_of(page: str, field: str) -> str:
    m = re.search(rf'<p class="error" id="{field}-error" role="alert">([^<]*)</p>', page)
    return html.unescape(m.group(1)) if m else ""


def _state(plat: Platform, cluster_id: str) -> str:
    with plat.svc.db.reader() as s:
        c = s.get(Cluster, cluster_id)
        return c.state if c is not None else "GONE"


def _set_running(plat: Platform, cluster_id: str) -> None:
    """What the executor does when every node is ready (no agent runs in these tests)."""
    with plat.svc.db.session() as s:
        c = s.get(Cluster, cluster_id)
        assert c is not None
        c.state, c.operation, c.task_id = "RUNNING", None, None


def test_a_spec_file_creates_a_cluster_and_its_errors_are_shown_at_the_field(
    plat: Platform,
) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    csrf = csrf_of(sign_in(client, "dev"))
    r = _upload(client, csrf, "web", b"{not json")
    assert r.status_code == 422 and "s.json is not JSON" in _error_of(r.text, "spec")
    bad = _spec()
    bad["nodeGroups"][0]["instanceNum"] = -1
    r = _upload(client, csrf, "web", json.dumps(bad).encode())
    assert r.status_code == 422
    assert _error_of(r.text, "spec").startswith("nodeGroups")  # the path inside the file
    r = _upload(client, csrf, "Bad_Name", json.dumps(_spec()).encode())
    assert r.status_code == 422 and _error_of(r.text, "upload-name")
    assert 'value="Bad_Name"' in r.text  # the form keeps what was typed
    with plat.svc.db.reader() as s:
        assert s.scalars(select(Cluster)).all() == []
    r = _upload(client, csrf, "web", json.dumps(_spec()).encode())
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/portal/clusters/clu")
    r = _upload(client, csrf, "web", json.dumps(_spec()).encode())  # the same form again
    assert r.status_code == 303  # one cluster per form (its key)
    with plat.svc.db.reader() as s:
        assert len(s.scalars(select(Cluster)).all()) == 1


def test_stop_resize_export_and_delete_through_the_confirmation(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dev", "project-member")
    csrf = csrf_of(sign_in(client, "dev"))
    r = _upload(client, csrf, "web", json.dumps(_spec()).encode())
    cid = r.headers["location"].rsplit("/", 1)[1]
    page = client.get(f"/portal/clusters/{cid}").text
    assert "Stop</button>" in page and "Resize</button>" in page and "Export the spec" in page
    r = client.post(f"/portal/clusters/{cid}/action", data={"csrf": csrf, "action": "stop"})
    assert r.status_code == 409 and "is PROVISIONING" in r.text  # shown, nothing changed
    assert _state(plat, cid) == "PROVISIONING"
    _set_running(plat, cid)

    form = {"csrf": csrf, "nodeGroup": "nope", "instanceNum": "3"}
    r = client.post(f"/portal/clusters/{cid}/resize", data=form)
    assert r.status_code == 422 and "has no node group 'nope'" in _error_of(r.text, "nodeGroup")
    r = client.post(
        f"/portal/clusters/{cid}/resize", data={**form, "nodeGroup": "w", "instanceNum": "x"}
    )
    assert (
        r.status_code == 422
        and _error_of(r.text, "instanceNum") == "must be a whole number of nodes"
    )
    assert _state(plat, cid) == "RUNNING"
    r = client.post(f"/portal/clusters/{cid}/resize", data={**form, "nodeGroup": "w"})
    assert r.status_code == 303 and _state(plat, cid) == "UPDATING"

    r = client.get(f"/portal/clusters/{cid}/export")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="web.json"'
    exported = plat.client.get(f"/v1/clusters/{cid}/export", headers=plat.admin).json()
    assert r.json() == json.loads(json.dumps(exported, sort_keys=True))

    _set_running(plat, cid)
    r = client.post(f"/portal/clusters/{cid}/action", data={"csrf": csrf, "action": "stop"})
    assert r.status_code == 303 and _state(plat, cid) == "STOPPING"

    # Delete: a post without the confirmation goes to the confirmation page, deleting nothing.
    r = client.post(f"/portal/clusters/{cid}/delete", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/portal/clusters/{cid}/delete"
    assert _state(plat, cid) == "STOPPING"
    confirm = client.get(r.headers["location"])
    assert confirm.status_code == 200 and "Delete cluster web?" in confirm.text
    assert 'name="confirm" value="yes"' in confirm.text and "Keep the nodes" in confirm.text
    r = client.post(f"/portal/clusters/{cid}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 409 and "Cluster web" in r.text  # stopping: said on its page
    assert _state(plat, cid) == "STOPPING"
    _set_running(plat, cid)
    r = client.post(f"/portal/clusters/{cid}/delete", data={"csrf": csrf, "confirm": "yes"})
    assert r.status_code == 303 and r.headers["location"] == "/portal/projects/default/clusters"
    assert _state(plat, cid) in ("DELETING", "GONE")


def test_a_viewer_sees_no_cluster_buttons_and_every_change_is_refused(plat: Platform) -> None:
    add_user(plat, "vic", "project-viewer")
    body = {"name": "web", "spec": _spec()}
    r = plat.client.post("/v1/projects/default/clusters", json=body, headers=plat.admin)
    cid = r.json()["entity"]["id"]
    _set_running(plat, cid)
    client = mount(plat)
    csrf = csrf_of(sign_in(client, "vic"))
    listing = client.get("/portal/projects/default/clusters").text
    assert "Create from the file" not in listing
    page = client.get(f"/portal/clusters/{cid}").text
    assert "Stop</button>" not in page and "Resize" not in page and ">Delete<" not in page
    assert "Export the spec" in page  # reading is allowed
    assert client.get(f"/portal/clusters/{cid}/export").status_code == 200
    assert client.get(f"/portal/clusters/{cid}/delete").status_code == 403
    for path, form in (
        ("action", {"action": "stop"}),
        ("resize", {"nodeGroup": "w", "instanceNum": "3"}),
        ("delete", {"confirm": "yes"}),
    ):
        r = client.post(f"/portal/clusters/{cid}/{path}", data={"csrf": csrf, **form})
        assert r.status_code == 403, path
    r = _upload(client, csrf, "other", json.dumps(_spec()).encode())
    assert r.status_code == 403
    assert _state(plat, cid) == "RUNNING"
