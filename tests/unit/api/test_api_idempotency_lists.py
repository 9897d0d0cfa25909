"""Idempotency-Key replays, cursor pagination and list filters."""

from __future__ import annotations

from typing import Any

from cellplane_platform_support import Platform

URL = "/v1/projects/default/cells"
BODY = {"name": "web", "image": "host", "command": ["sleep", "3600"]}


def post(plat: Platform, body: dict[str, Any], key: str | None) -> Any:
    headers = {**plat.admin, **({"Idempotency-Key": key} if key else {})}
    return plat.client.post(URL, json=body, headers=headers)


def test_same_key_same_body_replays_the_first_answer(plat: Platform) -> None:
    first = post(plat, BODY, "k-1")
    again = post(plat, BODY, "k-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert (
        again.headers["location"] == first.headers["location"] == f"/v1/tasks/{first.json()['id']}"
    )
    assert plat.cell_count() == 1
    # The replay is the stored answer, even after the task moved on.
    plat.schedule()
    assert post(plat, BODY, "k-1").json()["state"] == "QUEUED"
    assert plat.task(first.json()["id"])["state"] == "STARTED"


def test_same_key_other_body_is_a_mismatch(plat: Platform) -> None:
    assert post(plat, BODY, "k-1").status_code == 202
    r = post(plat, {**BODY, "name": "other"}, "k-1")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/idempotency-mismatch")
    assert plat.cell_count() == 1


def test_other_key_same_body_is_a_new_request(plat: Platform) -> None:
    assert post(plat, BODY, "k-1").status_code == 202
    r = post(plat, BODY, "k-2")
    assert r.status_code == 409 and r.json()["type"].endswith("/conflict")


def test_refused_requests_are_not_remembered(plat: Platform) -> None:
    bad = {**BODY, "image": "nope"}
    assert post(plat, bad, "k-1").status_code == 422
    # The same key can be used once the request is fixed.
    assert post(plat, BODY, "k-1").status_code == 202
    assert plat.cell_count() == 1


def test_key_length_is_checked(plat: Platform) -> None:
    r = post(plat, BODY, "k" * 256)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert plat.cell_count() == 0


def test_keys_work_on_state_changes_too(plat: Platform) -> None:
    cid = post(plat, BODY, None).json()["entity"]["id"]
    headers = {**plat.admin, "Idempotency-Key": "stop-1"}
    a = plat.client.post(f"/v1/cells/{cid}/stop", headers=headers)
    b = plat.client.post(f"/v1/cells/{cid}/stop", headers=headers)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"]
    # A second stop without key is a second task.
    c = plat.client.post(f"/v1/cells/{cid}/stop", headers=plat.admin)
    assert c.json()["id"] != a.json()["id"]


def _make(plat: Platform, n: int, labels: list[dict[str, str]] | None = None) -> list[str]:
    ids = []
    for i in range(n):
        extra = {"labels": labels[i]} if labels else {}
        r = plat.create_cell(f"c{i}", **extra)
        assert r.status_code == 202, r.text
        ids.append(r.json()["entity"]["id"])
    return ids


def _pages(plat: Platform, query: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        q = query + (f"&cursor={cursor}" if cursor else "")
        r = plat.client.get(f"{URL}?{q}", headers=plat.admin)
        assert r.status_code == 200, r.text
        data = r.json()
        pages.append([c["id"] for c in data["items"]])
        cursor = data["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


def test_pagination_walks_every_cell_once(plat: Platform) -> None:
    ids = _make(plat, 5)
    pages = _pages(plat, "limit=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for p in pages for i in p]
    assert len(set(flat)) == 5
    assert flat == sorted(ids)
    # A page size that divides the count ends without an empty page.
    assert [len(p) for p in _pages(plat, "limit=5")] == [5]
    assert [len(p) for p in _pages(plat, "limit=1")] == [1, 1, 1, 1, 1]


def test_list_items_are_cells(plat: Platform) -> None:
    _make(plat, 1)
    (item,) = plat.client.get(URL, headers=plat.admin).json()["items"]
    assert item["name"] == "c0" and item["project"] == "default" and item["tenant"] == "default"
    assert item["image"] == "host" and item["flavor"] == "SMALL"
    assert (item["cpu"], item["memory_mb"], item["disk_gb"]) == (0.5, 512, 1)
    assert item["state"] == "PENDING" and item["desired_state"] == "RUNNING"
    assert item["restart"] == {"policy": "never", "max_retries": None}


def test_label_filter(plat: Platform) -> None:
    labels = [
        {"app": "web", "tier": "front"},
        {"app": "db"},
        {"app": "web", "tier": "back"},
        {},
        {"app": "web"},
    ]
    ids = _make(plat, 5, labels)
    web = sorted([ids[0], ids[2], ids[4]])  # lists are ordered by id
    r = plat.client.get(f"{URL}?label=app=web", headers=plat.admin)
    assert [c["id"] for c in r.json()["items"]] == web
    r = plat.client.get(f"{URL}?label=app=web&label=tier=back", headers=plat.admin)
    assert [c["id"] for c in r.json()["items"]] == [ids[2]]
    r = plat.client.get(f"{URL}?label=app=cache", headers=plat.admin)
    assert r.json() == {"items": [], "next_cursor": None}
    # Filters and pages together.
    pages = _pages(plat, "limit=2&label=app=web")
    assert [i for p in pages for i in p] == web
    assert [len(p) for p in pages] == [2, 1]


def test_name_and_state_filters(plat: Platform) -> None:
    ids = _make(plat, 3)
    r = plat.client.get(f"{URL}?name=c1", headers=plat.admin)
    assert [c["id"] for c in r.json()["items"]] == [ids[1]]
    assert plat.client.get(f"{URL}?name=zzz", headers=plat.admin).json()["items"] == []
    plat.schedule()
    r = plat.client.get(f"{URL}?state=scheduled", headers=plat.admin)
    assert len(r.json()["items"]) == 3
    assert plat.client.get(f"{URL}?state=RUNNING", headers=plat.admin).json()["items"] == []


def test_projects_scope_their_cells(plat: Platform) -> None:
    r = plat.client.post("/v1/projects", json={"name": "team-b"}, headers=plat.admin)
    assert r.status_code == 201
    assert r.json()["name"] == "team-b"
    assert (
        plat.client.post("/v1/projects", json={"name": "team-b"}, headers=plat.admin).status_code
        == 409
    )
    _make(plat, 1)
    r = plat.client.post(
        "/v1/projects/team-b/cells", json={**BODY, "name": "c0"}, headers=plat.admin
    )
    assert r.status_code == 202  # same name, other project
    b = plat.client.get("/v1/projects/team-b/cells", headers=plat.admin).json()["items"]
    assert [c["project"] for c in b] == ["team-b"]
    names = [p["name"] for p in plat.client.get("/v1/projects", headers=plat.admin).json()["items"]]
    assert names == ["default", "team-b"]


def _statements(plat: Platform, query: str) -> tuple[int, list[dict[str, Any]]]:
    with plat.statements() as seen:
        r = plat.client.get(f"{URL}?{query}", headers=plat.admin)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return len(seen), items


def test_a_page_of_cells_on_many_hosts_reads_them_together_and_shows_each_as_get_does(
    plat: Platform,
) -> None:
    for k in range(2, 7):
        plat.register_host(f"host-{k}")
    ids = _make(plat, 6)
    plat.schedule()
    one, _ = _statements(plat, "limit=1")
    six, items = _statements(plat, "limit=6")
    assert len({c["host"] for c in items}) > 1  # spread over several hosts
    assert six == one  # not one read per cell's host and networks
    assert [c["id"] for c in items] == sorted(ids)
    for item in items:
        single = plat.cell(item["id"])
        assert item == {**single, "events": []}
