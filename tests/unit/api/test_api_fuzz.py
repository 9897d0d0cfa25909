"""Schemathesis over the whole API (issue 14), and a regression test for each thing it found.

`test_the_whole_api_survives_fuzzing` is the bounded run of the suite: every operation of the
server's own OpenAPI document, valid and invalid examples, as the system admin, a tenant admin, a
project member, a project viewer and an anonymous caller, against a real server on a free port
(`cellplane.testing.fuzz`). A longer run: `bench/fuzz.py --seconds 120`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests

from cellplane.testing.fuzz import FuzzServer, FuzzStats, _operations, _send, fuzz

# A bounded run: about a minute with the server's set-up.
SECONDS = 45


@pytest.fixture(scope="module")
def server() -> Iterator[FuzzServer]:
    with FuzzServer() as s:
        yield s


def test_the_whole_api_survives_fuzzing(server: FuzzServer) -> None:
    stats = fuzz(server, SECONDS, seed=14)
    summary = stats.summary()
    # Each found problem is listed with the request that shows it (as a curl command).
    assert summary["failures"] == {}, "\n\n".join(f"{k}\n{v}" for k, v in stats.failures.items())
    assert stats.server_errors == 0
    assert stats.schema_violations == 0
    assert stats.state_changes == 0
    assert len(stats.operations) > 90  # the whole document, not a part of it
    assert summary["not_sent"] == []
    # The world's ids reach past lookup: most operations answer something else than 401/403/404.
    assert len(stats.covered) > len(stats.operations) // 2, summary["not_covered"]


def test_the_state_digest_sees_a_change(server: FuzzServer) -> None:
    """The "a refused request changed nothing" check can fail: a change moves the digest."""
    before = server.digest()
    assert server.digest() == before
    r = httpx.post(
        f"{server.url}/v1/projects",
        json={"name": "digest-probe"},
        headers=server.headers["system-admin"],
    )
    assert r.status_code == 201, r.text
    assert server.digest() != before


def _doc(server: FuzzServer) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{server.url}/openapi.json").json()
    return doc


def _declared(server: FuzzServer, method: str, path: str, status: int) -> dict[str, Any]:
    responses = _doc(server)["paths"][path][method]["responses"]
    assert str(status) in responses, (method, path, sorted(responses))
    content: dict[str, Any] = responses[str(status)].get("content", {})
    return content


# --- what the fuzzer found (each failed before its fix) ----------------------------------------


def test_a_role_assignment_naming_a_missing_group_is_a_documented_404(server: FuzzServer) -> None:
    r = httpx.post(
        f"{server.url}/v1/role-assignments",
        json={"group": "no-such-group", "role": "project-viewer"},
        headers=server.headers["system-admin"],
    )
    assert r.status_code == 404, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "application/problem+json" in _declared(server, "post", "/v1/role-assignments", 404)


def test_deleting_ldap_settings_that_do_not_exist_is_a_documented_404(server: FuzzServer) -> None:
    admin = server.headers["tenant-admin"]
    r = httpx.delete(f"{server.url}/v1/identity/ldap", headers=admin)
    assert r.status_code in (204, 404), r.text
    r = httpx.delete(f"{server.url}/v1/identity/ldap", headers=admin)
    assert r.status_code == 404, r.text
    assert "application/problem+json" in _declared(server, "delete", "/v1/identity/ldap", 404)


def test_the_login_form_posted_as_json_answers_a_documented_oauth_error(
    server: FuzzServer,
) -> None:
    r = httpx.post(f"{server.url}/identity/default/authorize", json={"x": 1})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "invalid_request"
    content = _declared(server, "post", "/identity/{tenant}/authorize", 400)
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/OAuthError"}
    # The OAuth errors of the form's route are JSON, not HTML (413, 429).
    for status in (413, 429):
        content = _declared(server, "post", "/identity/{tenant}/authorize", status)
        assert set(content) == {"application/json"}, content


def test_a_task_event_is_documented_as_what_the_stream_sends(server: FuzzServer) -> None:
    """Schemathesis checks each SSE event against the media type's schema: an event is an
    object (`event`, `data`), its data the task as JSON; the document said "a string"."""
    content = _declared(server, "get", "/v1/tasks/{task_id}/events", 200)
    schema = content["text/event-stream"]["schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/Task"}
    assert "Task" in _doc(server)["components"]["schemas"]


def test_a_request_that_is_not_http_is_counted_not_held_against_the_api(
    server: FuzzServer,
) -> None:
    """An empty Content-Length (what a negative example once sent): uvicorn refuses the message
    (400, text/plain) before the application sees it; no schema applies to that answer. It is
    counted apart, and the check that a refused request changed nothing still runs on it."""
    (op,) = [
        o
        for o in _operations(server)
        if o.method.upper() == "PUT" and o.path == "/v1/groups/{group}/members/{user}"
    ]
    case = op.Case(
        path_parameters={"group": "grp-none", "user": "usr-none"},
        headers={"Content-Length": "", "X-": "JI3{$w["},
    )
    stats = FuzzStats()
    with requests.Session() as session:
        _send(server, session, case, "system-admin", stats)
        assert stats.not_http == 1, stats.summary()
        assert stats.statuses == {400: 1}
        assert stats.failures == {} and stats.schema_violations == 0 and stats.state_changes == 0
        # A real answer of the application is still checked against its document.
        case = op.Case(path_parameters={"group": "grp-none", "user": "usr-none"})
        _send(server, session, case, "system-admin", stats)
    assert stats.not_http == 1 and stats.statuses == {400: 1, 404: 1}, stats.summary()
