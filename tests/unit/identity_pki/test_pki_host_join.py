"""Joining hosts: one-use and expiring join tokens, mutual TLS instead of a bearer host token,
re-registration with the host certificate, revocation that cuts a host off at once."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from cellplane_platform_support import HOST_CAPACITY, Platform
from cryptography import x509

from cellplane.ids import utcnow
from cellplane.state.models import JoinToken

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def _sans(name: str) -> list[x509.GeneralName]:
    return [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("10.0.0.9"))]


def _body(name: str, token: str = "", csr: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "join_token": token,
        "name": name,
        "address": "10.0.0.9",
        "capacity": HOST_CAPACITY,
    }
    if csr is not None:
        body["csr"] = csr
    return body


def _token(plat: Platform, **body: Any) -> dict[str, Any]:
    r = plat.client.post("/v1/join-tokens", json=body, headers=plat.admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_one_use_join_token_admits_one_host_and_is_never_shown_again(
    plat: Platform, make_csr: Callable[..., str]
) -> None:
    created = _token(plat)  # defaults: one use, one hour
    assert created["token"].startswith("cpj_")
    assert (created["uses_left"], created["used"], created["state"]) == (1, 0, "ACTIVE")
    assert created["expires_at"] is not None
    csr = make_csr("node-a", sans=_sans("node-a"))
    r = plat.client.post("/v1/agent/register", json=_body("node-a", created["token"], csr))
    assert r.status_code == 200, r.text
    again = plat.client.post("/v1/agent/register", json=_body("node-b", created["token"]))
    assert again.status_code == 401
    assert "used up" in again.json()["detail"]
    listed = plat.client.get("/v1/join-tokens", headers=plat.admin).json()["items"]
    row = next(t for t in listed if t["id"] == created["id"])
    assert (row["state"], row["uses_left"], row["used"]) == ("USED", 0, 1)
    assert "token" not in row


def test_an_expired_join_token_is_refused(plat: Platform) -> None:
    created = _token(plat, ttl_s=60, uses=None)
    with plat.svc.db.session() as s:
        row = s.get(JoinToken, created["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    r = plat.client.post("/v1/agent/register", json=_body("node-c", created["token"]))
    assert r.status_code == 401
    listed = plat.client.get("/v1/join-tokens", headers=plat.admin).json()["items"]
    assert next(t for t in listed if t["id"] == created["id"])["state"] == "EXPIRED"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": -5}, "ttl_s"),
        ({"ttl_s": 1e9}, "ttl_s"),
        ({"uses": 0}, "uses"),
        ({"uses": "many"}, "uses"),
        ({"color": "red"}, "color"),
    ],
)
def test_bad_join_token_requests_name_the_field_and_create_nothing(
    plat: Platform, body: dict[str, Any], field: str
) -> None:
    before = plat.client.get("/v1/join-tokens", headers=plat.admin).json()["items"]
    r = plat.client.post("/v1/join-tokens", json=body, headers=plat.admin)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert plat.client.get("/v1/join-tokens", headers=plat.admin).json()["items"] == before


def test_a_deleted_join_token_no_longer_admits(plat: Platform) -> None:
    created = _token(plat, uses=None)
    r = plat.client.delete(f"/v1/join-tokens/{created['id']}", headers=plat.admin)
    assert r.status_code == 204
    r = plat.client.post("/v1/agent/register", json=_body("node-d", created["token"]))
    assert r.status_code == 401
    r = plat.client.delete(f"/v1/join-tokens/{created['id']}", headers=plat.admin)
    assert r.status_code == 404


def test_with_a_certificate_there_is_no_bearer_host_token_and_mtls_registers_again(
    plat: Platform,
    make_csr: Callable[..., str],
    mtls_client: Callable[[str | None], TestClient],
) -> None:
    csr = make_csr("node-e", sans=_sans("node-e"))
    joined = plat.client.post("/v1/agent/register", json=_body("node-e", plat.join_token, csr))
    data = joined.json()
    assert data["host_token"] == ""
    host = data["host_id"]
    r = plat.client.get(
        f"/v1/agent/hosts/{host}/assignments",
        params={"wait": 0},
        headers={"Authorization": "Bearer "},
    )
    assert r.status_code == 401
    agent = mtls_client(data["certificate"])
    # The host's own certificate admits it again, without a join token (restart, rotation):
    again = agent.post("/v1/agent/register", json=_body("node-e", "", csr))
    assert again.status_code == 200, again.text
    assert again.json()["host_id"] == host
    # ... the new certificate replaces the old one, which is refused from then on.
    old = agent.get(f"/v1/agent/hosts/{host}/assignments", params={"wait": 0})
    assert old.status_code == 401 and "revoked" in old.json()["detail"]
    new = mtls_client(again.json()["certificate"])
    assert new.get(f"/v1/agent/hosts/{host}/assignments", params={"wait": 0}).status_code == 200
    # A certificate does not admit another host's name.
    other = new.post("/v1/agent/register", json=_body("node-x", "", make_csr("node-x")))
    assert other.status_code == 401


def test_revoking_a_host_cuts_it_off_at_once_until_it_joins_again(
    plat: Platform,
    make_csr: Callable[..., str],
    mtls_client: Callable[[str | None], TestClient],
) -> None:
    csr = make_csr("node-f", sans=_sans("node-f"))
    data = plat.client.post("/v1/agent/register", json=_body("node-f", plat.join_token, csr)).json()
    host, agent = data["host_id"], mtls_client(data["certificate"])
    assert agent.post(f"/v1/agent/hosts/{host}/heartbeat", json={}).status_code == 204
    r = plat.client.post("/v1/hosts/node-f/revoke", headers=plat.admin)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "DOWN" and r.json()["revoked_at"]
    assert "revoked" in r.json()["state_reason"]
    refused = agent.post(f"/v1/agent/hosts/{host}/heartbeat", json={})
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert agent.post("/v1/agent/register", json=_body("node-f", "", csr)).status_code == 401
    # A join token brings it back (the operator's decision), with a new certificate.
    back = plat.client.post("/v1/agent/register", json=_body("node-f", plat.join_token, csr))
    assert back.status_code == 200 and back.json()["host_id"] == host
    view = plat.client.get(f"/v1/hosts/{host}", headers=plat.admin).json()
    assert view["revoked_at"] is None and view["state"] == "READY"
    assert plat.client.post("/v1/hosts/nope/revoke", headers=plat.admin).status_code == 404
