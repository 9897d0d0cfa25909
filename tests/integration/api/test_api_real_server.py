"""What only a real server process shows (issue 7, items 8 and 10): forwarded headers are not
believed unless the operator names the proxy, and the server does not announce itself.

Before the fix uvicorn trusted `X-Forwarded-For` from 127.0.0.1 (its default), so any local
client could write any source address into the audit log and dodge the token endpoint's
per-address rate limit by rotating the header; and every answer carried `Server: uvicorn`.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cellplane.testing.harness import Deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Deployment]:
    d = Deployment()
    try:
        d.start_server()
        yield d
    finally:
        d.close()


def _admin(d: Deployment) -> dict[str, str]:
    return {"Authorization": f"Bearer {d.admin_token}"}


def test_the_server_does_not_announce_itself(server: Deployment) -> None:
    r = httpx.get(f"{server.url}/v1/whoami", headers=_admin(server))
    assert r.status_code == 200
    assert "server" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"


def test_a_forwarded_for_header_does_not_change_the_audited_source(server: Deployment) -> None:
    spoofed = {**_admin(server), "X-Forwarded-For": "203.0.113.9"}
    r = httpx.post(f"{server.url}/v1/projects", json={"name": "spoofed"}, headers=spoofed)
    assert r.status_code == 201, r.text
    events = httpx.get(
        f"{server.url}/v1/audit", params={"limit": 20}, headers=_admin(server)
    ).json()["items"]
    (created,) = [e for e in events if e["action"] == "POST /v1/projects"]
    assert created["source"] == "127.0.0.1"


def test_rotating_forwarded_for_does_not_escape_the_token_rate_limit(server: Deployment) -> None:
    url = f"{server.url}/identity/default/token"
    codes = []
    with httpx.Client() as c:
        for i in range(120):
            r = c.post(
                url,
                data={"grant_type": "client_credentials", "client_id": "nobody"},
                headers={"X-Forwarded-For": f"198.51.100.{i % 250}"},
            )
            codes.append(r.status_code)
    assert 429 in codes, codes
    assert set(codes) <= {400, 401, 429}
