"""LDAP federation end to end: a real server process, a real slapd, the password grant.

Users of the directory sign in at their tenant's token endpoint and get the roles their LDAP
groups map to; those roles then hold on the API like any other.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from cellplane.testing.harness import Deployment

from .conftest import ALICE_PW, BOB_PW, GROUP_ROLES, GROUPS, PEOPLE, SERVICE_DN, SERVICE_PW, Slapd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[Deployment]:
    d = Deployment()
    try:
        d.start_server()
        yield d
    finally:
        d.close()


def _admin(d: Deployment) -> httpx.Client:
    return httpx.Client(
        base_url=d.url, headers={"Authorization": f"Bearer {d.admin_token}"}, timeout=30
    )


def _login(d: Deployment, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{d.url}/identity/default/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": password,
            "client_id": "cellplane-cli",
        },
        timeout=30,
    )


def test_ldap_users_sign_in_with_roles_from_their_groups(server: Deployment, slapd: Slapd) -> None:
    with _admin(server) as admin:
        r = admin.put(
            "/v1/identity/ldap",
            json={
                "url": slapd.url,
                "bind_dn": SERVICE_DN,
                "bind_password": SERVICE_PW,
                "user_base": PEOPLE,
                "group_base": GROUPS,
                "group_roles": GROUP_ROLES,
            },
        )
        assert r.status_code == 200, r.text

        # alice is in platform-admins -> tenant-admin: she may manage users.
        r = _login(server, "alice", ALICE_PW)
        assert r.status_code == 200, r.text
        alice = {"Authorization": f"Bearer {r.json()['access_token']}"}
        me = httpx.get(f"{server.url}/v1/whoami", headers=alice, timeout=30).json()
        assert me["name"] == "alice" and me["roles"] == ["tenant-admin"], me
        users = httpx.get(f"{server.url}/v1/users", headers=alice, timeout=30)
        assert users.status_code == 200
        alice_row = next(u for u in users.json()["items"] if u["name"] == "alice")
        assert alice_row["source"] == "ldap"

        # bob is in developers -> project-member: cells yes, users no.
        r = _login(server, "bob", BOB_PW)
        assert r.status_code == 200, r.text
        bob = {"Authorization": f"Bearer {r.json()['access_token']}"}
        me = httpx.get(f"{server.url}/v1/whoami", headers=bob, timeout=30).json()
        assert me["roles"] == ["project-member"], me
        cells = httpx.get(f"{server.url}/v1/projects/default/cells", headers=bob, timeout=30)
        assert cells.status_code == 200
        assert httpx.get(f"{server.url}/v1/users", headers=bob, timeout=30).status_code == 403

        # A wrong password and an unknown user fail the same way.
        wrong, unknown = _login(server, "bob", "nope"), _login(server, "nobody", "nope")
        assert wrong.status_code == unknown.status_code == 400
        assert wrong.json() == unknown.json()
        assert wrong.json()["error"] == "invalid_grant"

        # Federation off: directory users can no longer sign in.
        assert admin.delete("/v1/identity/ldap").status_code == 204
        assert _login(server, "alice", ALICE_PW).status_code == 400
