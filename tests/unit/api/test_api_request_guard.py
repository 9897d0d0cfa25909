"""The request guard and the answers' headers (issue 7: items 2, 3, 6 and 10).

Each test here failed before its fix: a lone surrogate was accepted and then broke every list and
the agent's feed; a 50 MB body was parsed and stored; `web\\n` passed name validation; a garbage
cursor was decoded leniently; TRACE answered 405 without `Allow`; `all_tenants=true` from a tenant
admin was silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cellplane_platform_support import Platform
from cellplane_tenancy_support import Worlds
from sqlalchemy import func, select, update

from cellplane.state.models import Cell, Project, Volume

CELLS = "/v1/projects/default/cells"
PROBLEM = "https://cellplane.dev/problems/"


def problem(r: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM + slug, body
    return body


def post_raw(plat: Platform, path: str, raw: str | bytes, **headers: str) -> httpx.Response:
    data = raw.encode() if isinstance(raw, str) else raw
    h = {**plat.admin, "content-type": "application/json", **headers}
    return plat.client.post(path, content=data, headers=h)


def cell_body(**over: Any) -> dict[str, Any]:
    return {"name": "a", "image": "host", "command": ["sleep", "3600"], **over}


# --- item 2: NUL and lone surrogates ----------------------------------------------------------

BAD_TEXT = [
    ('"env": {"K": "\\ud800"}', "env.K"),
    ('"env": {"K": "a\\u0000b"}', "env.K"),
    ('"labels": {"team": "\\udfff"}', "labels.team"),
    ('"command": ["sh", "-c", "echo \\ud83d"]', "command[2]"),
    ('"env": {"\\ud800": "v"}', "env"),
]


@pytest.mark.parametrize(("fragment", "field"), BAD_TEXT)
def test_lone_surrogates_and_nul_are_refused_naming_the_field(
    plat: Platform, fragment: str, field: str
) -> None:
    raw = '{"name": "a", "image": "host", ' + fragment + "}"
    if '"command"' not in fragment:
        raw = raw[:-1] + ', "command": ["sleep", "1"]}'
    body = problem(post_raw(plat, CELLS, raw), 422, "validation")
    assert body["errors"][0]["field"] == field
    assert "NUL" in body["detail"] or "surrogate" in body["detail"]
    assert plat.cell_count() == 0


def test_a_valid_surrogate_pair_is_text_like_any_other(plat: Platform) -> None:
    raw = json.dumps(cell_body(env={"GREETING": "hi \U0001f600"}), ensure_ascii=True)
    assert "\\ud83d\\ude00" in raw
    r = post_raw(plat, CELLS, raw)
    assert r.status_code == 202, r.text
    assert plat.cell(r.json()["entity"]["id"])["env"]["GREETING"] == "hi \U0001f600"


def test_a_stored_bad_string_never_stops_lists_the_agent_feed_or_deletion(
    plat: Platform,
) -> None:
    """A row written before the guard existed (or by any other path) still answers."""
    r = plat.client.post(CELLS, json=cell_body(name="old"), headers=plat.admin)
    assert r.status_code == 202, r.text
    cid = r.json()["entity"]["id"]
    plat.schedule()
    with plat.svc.db.session() as s:
        s.execute(update(Cell).where(Cell.id == cid).values(env={"K": "x\ud800"}))
    lst = plat.client.get(CELLS, headers=plat.admin)
    assert lst.status_code == 200 and lst.json()["items"][0]["env"]["K"] == "x\ufffd"
    assert plat.client.get(f"/v1/cells/{cid}", headers=plat.admin).status_code == 200
    feed = plat.assignments()
    assert [c["cell_id"] for c in feed["cells"]] == [cid]
    assert plat.client.delete(f"/v1/cells/{cid}", headers=plat.admin).status_code == 202


# --- item 3: body size and field caps ---------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(plat: Platform) -> None:
    big = json.dumps(cell_body(env={"K": "x" * (2 * 1024 * 1024)}))
    body = problem(post_raw(plat, CELLS, big), 413, "too-large")
    assert "1048576" in body["detail"]
    assert plat.cell_count() == 0


def test_a_chunked_body_over_the_limit_is_refused(plat: Platform) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "a", "image": "host", "env": {"K": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    r = plat.client.post(
        CELLS, content=chunks(), headers={**plat.admin, "content-type": "application/json"}
    )
    problem(r, 413, "too-large")
    assert plat.cell_count() == 0


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"env": {"K": "x" * (32 * 1024 + 1)}}, "env"),
        ({"env": {f"K{i}": "x" * 30000 for i in range(10)}}, "env"),
        ({"env": {"A=B": "1"}}, "env"),
        ({"env": {"": "1"}}, "env"),
        ({"command": ["x" * (32 * 1024 + 1)]}, "command[0]"),
        ({"command": ["x" * 30000] * 5}, "command"),
        ({"command": ["a"] * 1025}, "command"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
        ({"image": "x" * 129}, "image"),
    ],
)
def test_every_free_text_field_is_capped(plat: Platform, over: dict[str, Any], field: str) -> None:
    r = plat.client.post(CELLS, json=cell_body(**over), headers=plat.admin)
    assert problem(r, 422, "validation")["errors"][0]["field"] == field
    assert plat.cell_count() == 0


def test_json_nested_too_deeply_is_malformed(plat: Platform) -> None:
    deep = "[" * 5000 + "]" * 5000
    problem(
        post_raw(plat, CELLS, '{"name": "a", "image": "host", "x": ' + deep + "}"), 400, "malformed"
    )
    deep = "[" * 40 + "]" * 40
    body = problem(post_raw(plat, CELLS, '{"name": "a", "x": ' + deep + "}"), 400, "malformed")
    assert "nested deeper" in body["detail"]


def test_a_nul_in_the_url_is_malformed(plat: Platform) -> None:
    r = plat.client.get(CELLS + "?name=a%00b", headers=plat.admin)
    problem(r, 400, "malformed")


# --- item 6: a trailing newline is not a name --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CELLS, cell_body(name="web\n")),
        ("/v1/projects/default/volumes", {"name": "data\n"}),
        ("/v1/projects", {"name": "default\n"}),
        ("/v1/users", {"name": "admin\n"}),
        ("/v1/tenants", {"name": "acme\n"}),
        ("/v1/groups", {"name": "ops\n"}),
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_name(
    plat: Platform, path: str, body: dict[str, Any]
) -> None:
    def rows() -> tuple[int, int, int]:
        with plat.svc.db.reader() as s:
            return (
                int(s.scalar(select(func.count(Cell.id))) or 0),
                int(s.scalar(select(func.count(Volume.id))) or 0),
                int(s.scalar(select(func.count(Project.id))) or 0),
            )

    before = rows()
    r = plat.client.post(path, json=body, headers=plat.admin)
    assert problem(r, 422, "validation")["errors"][0]["field"] == "name"
    assert "\n" not in r.headers.get("location", "")
    assert rows() == before


def test_an_image_name_is_checked_before_its_upload(plat: Platform) -> None:
    r = plat.client.post(
        "/v1/images",
        params={"name": "bad\nname"},
        content=b"x" * 10,
        headers={**plat.admin, "content-type": "application/octet-stream"},
    )
    assert problem(r, 422, "validation")["errors"][0]["field"] == "name"


# --- item 10: the small ones -------------------------------------------------------------------


def test_answers_carry_nosniff_and_no_store(plat: Platform) -> None:
    for r in (
        plat.client.get("/v1/whoami", headers=plat.admin),
        plat.client.get("/v1/cells/nope", headers=plat.admin),
        plat.client.post(CELLS, json={}, headers=plat.admin),
    ):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY"


def test_a_method_not_allowed_names_the_allowed_ones(plat: Platform) -> None:
    r = plat.client.request("TRACE", CELLS, headers=plat.admin)
    problem(r, 405, "method-not-allowed")
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "POST"}
    r = plat.client.put("/v1/whoami", headers=plat.admin)
    assert r.status_code == 405 and "GET" in r.headers["allow"]


def test_a_garbage_cursor_is_refused_and_a_real_one_works(plat: Platform) -> None:
    for name in ("a", "b", "c"):
        assert plat.client.post(CELLS, json=cell_body(name=name), headers=plat.admin).is_success
    page = plat.client.get(CELLS + "?limit=2", headers=plat.admin).json()
    cursor = page["next_cursor"]
    assert cursor
    rest = plat.client.get(CELLS, params={"limit": 2, "cursor": cursor}, headers=plat.admin)
    assert [c["name"] for c in rest.json()["items"]] == ["c"]
    for garbage in ("a", "!!!" + cursor, cursor + "A", "Y2VsLQ", "x" * 200, "%%%"):
        r = plat.client.get(CELLS, params={"cursor": garbage}, headers=plat.admin)
        assert problem(r, 400, "malformed")["errors"][0]["field"] == "cursor"
    r = plat.client.get("/v1/audit", params={"before": "garbage"}, headers=plat.admin)
    assert problem(r, 400, "malformed")["errors"][0]["field"] == "before"


def test_all_tenants_from_a_tenant_admin_is_forbidden(plat: Platform) -> None:
    worlds = Worlds(plat)
    tenant_admin = worlds.b.tokens["tenant-admin"]
    r = plat.client.get("/v1/audit", params={"all_tenants": "true"}, headers=tenant_admin)
    problem(r, 403, "forbidden")
    assert plat.client.get("/v1/audit", headers=tenant_admin).status_code == 200
    r = plat.client.get("/v1/audit", params={"all_tenants": "true"}, headers=plat.admin)
    assert r.status_code == 200
    assert {e["tenant_id"] for e in r.json()["items"]} >= {worlds.a.tenant_id, worlds.b.tenant_id}
