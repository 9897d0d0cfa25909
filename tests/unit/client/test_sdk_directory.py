"""The directory, identity, quota, certificate and audit methods of the SDK: each sends its
route of docs/api.md with the right method, path, query and body, and returns the answer.

A recording MockTransport stands in for the server (the CLI tests in
tests/unit/cli/test_cli_identity.py run the same methods against the real app).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from cellplane.client import CellplaneError, Client


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[tuple[str, str]], Any]] = []
        self.answer: Any = {"ok": True}
        self.status = 200

    def handle(self, request: httpx.Request) -> httpx.Response:
        raw = request.read()
        body = json.loads(raw) if raw else None
        self.calls.append(
            (request.method, request.url.raw_path.decode().split("?")[0],
             list(request.url.params.multi_items()), body)
        )  # fmt: skip
        if self.status == 204:
            return httpx.Response(204)
        return httpx.Response(self.status, json=self.answer)

    @property
    def last(self) -> tuple[str, str, list[tuple[str, str]], Any]:
        return self.calls[-1]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def cp(rec: Recorder) -> Iterator[Client]:
    transport = httpx.MockTransport(rec.handle)
    with Client("http://cp.test", "tok", transport=transport, retries=0) as c:
        yield c


ITEMS = {"items": [{"id": "x-1", "name": "one"}]}

Call = Callable[[Client], Any]
CASES: list[tuple[str, Call, str, str, list[tuple[str, str]], Any]] = [
    ("whoami", lambda c: c.whoami(), "GET", "/v1/whoami", [], None),
    ("leader", lambda c: c.leader(), "GET", "/v1/system/leader", [], None),
    ("tenants", lambda c: c.list_tenants(), "GET", "/v1/tenants", [], None),
    ("tenant create", lambda c: c.create_tenant("acme", admin={"name": "root"}),
     "POST", "/v1/tenants", [], {"name": "acme", "admin": {"name": "root"}}),
    ("tenant show", lambda c: c.get_tenant("acme"), "GET", "/v1/tenants/acme", [], None),
    ("users", lambda c: c.list_users(), "GET", "/v1/users", [], None),
    ("user create", lambda c: c.create_user("bob", email="b@x"),
     "POST", "/v1/users", [], {"name": "bob", "email": "b@x"}),
    ("user show", lambda c: c.get_user("a/b"), "GET", "/v1/users/a%2Fb", [], None),
    ("user update", lambda c: c.update_user("bob", disabled=True, unlock=True),
     "PATCH", "/v1/users/bob", [], {"disabled": True, "unlock": True}),
    ("groups", lambda c: c.list_groups(), "GET", "/v1/groups", [], None),
    ("group create", lambda c: c.create_group("ops"), "POST", "/v1/groups", [], {"name": "ops"}),
    ("group show", lambda c: c.get_group("ops"), "GET", "/v1/groups/ops", [], None),
    ("member add", lambda c: c.add_group_member("ops", "bob"),
     "PUT", "/v1/groups/ops/members/bob", [], None),
    ("member remove", lambda c: c.remove_group_member("ops", "bob"),
     "DELETE", "/v1/groups/ops/members/bob", [], None),
    ("clients", lambda c: c.list_oauth_clients(), "GET", "/v1/clients", [], None),
    ("client create",
     lambda c: c.create_oauth_client("ci", grant_types=["client_credentials"]),
     "POST", "/v1/clients", [],
     {"name": "ci", "public": False, "redirect_uris": [], "grant_types": ["client_credentials"]}),
    ("client show", lambda c: c.get_oauth_client("ci"), "GET", "/v1/clients/ci", [], None),
    ("client secret", lambda c: c.rotate_oauth_client_secret("ci"),
     "POST", "/v1/clients/ci/secret", [], None),
    ("roles", lambda c: c.list_role_assignments(), "GET", "/v1/role-assignments", [], None),
    ("role assign", lambda c: c.assign_role("project-viewer", group="ops", project="web"),
     "POST", "/v1/role-assignments", [], {"role": "project-viewer", "group": "ops", "project": "web"}),
    ("tenant quota", lambda c: c.get_tenant_quota("acme"), "GET", "/v1/tenants/acme/quota", [], None),
    ("tenant quota set", lambda c: c.set_tenant_quota("acme", {"cpu": 4, "cells": None}),
     "PUT", "/v1/tenants/acme/quota", [], {"cpu": 4, "cells": None}),
    ("project quota", lambda c: c.get_project_quota("web"), "GET", "/v1/projects/web/quota", [], None),
    ("project quota set", lambda c: c.set_project_quota("web", {"memory_mb": 512}),
     "PUT", "/v1/projects/web/quota", [], {"memory_mb": 512}),
    ("cert request", lambda c: c.request_certificate("PEM", ttl_days=7),
     "POST", "/v1/certificates", [], {"csr": "PEM", "ttl_days": 7}),
    ("certs", lambda c: c.list_certificates(), "GET", "/v1/certificates", [], None),
    ("cert revoke", lambda c: c.revoke_certificate("0a1b"),
     "POST", "/v1/certificates/0a1b/revoke", [], None),
    ("audit", lambda c: c.list_audit(limit=5, action="login", all_tenants=True), "GET", "/v1/audit",
     [("limit", "5"), ("action", "login"), ("all_tenants", "true")], None),
    ("ldap", lambda c: c.get_ldap(), "GET", "/v1/identity/ldap", [], None),
    ("ldap set", lambda c: c.set_ldap({"url": "ldaps://dir"}, check=False),
     "PUT", "/v1/identity/ldap", [], {"url": "ldaps://dir", "check": False}),
    ("keys", lambda c: c.rotate_signing_key(), "POST", "/v1/identity/keys/rotate", [], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "method", "path", "params", "body"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_method_sends_its_route(
    rec: Recorder,
    cp: Client,
    call: Call,
    method: str,
    path: str,
    params: list[tuple[str, str]],
    body: Any,
) -> None:
    rec.answer = ITEMS  # a list method returns the items, any other the object as it came
    result = call(cp)
    assert rec.last == (method, path, params, body)
    assert result == (ITEMS["items"] if isinstance(result, list) else ITEMS)


def test_deletes_answer_nothing(rec: Recorder, cp: Client) -> None:
    rec.status = 204
    cp.delete_tenant("acme")
    cp.delete_user("bob")
    cp.delete_group("ops")
    cp.delete_oauth_client("ci")
    cp.revoke_role("rol-1")
    cp.delete_ldap()
    assert [(m, p) for m, p, _, _ in rec.calls] == [
        ("DELETE", "/v1/tenants/acme"),
        ("DELETE", "/v1/users/bob"),
        ("DELETE", "/v1/groups/ops"),
        ("DELETE", "/v1/clients/ci"),
        ("DELETE", "/v1/role-assignments/rol-1"),
        ("DELETE", "/v1/identity/ldap"),
    ]


def test_posts_carry_an_idempotency_key() -> None:
    keys: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        return httpx.Response(201, json={"id": "t-1"})

    with Client("http://cp.test", "tok", transport=httpx.MockTransport(handle)) as c:
        c.create_tenant("acme", idempotency_key="k-1")
        c.create_group("ops")
    assert keys[0] == "k-1" and keys[1]


def test_errors_are_problems(rec: Recorder, cp: Client) -> None:
    rec.status = 404
    rec.answer = {"title": "Not found", "status": 404, "detail": "no user 'zed'"}
    with pytest.raises(CellplaneError) as info:
        cp.get_user("zed")
    assert info.value.status == 404 and "zed" in str(info.value)


def test_ca_certificates_are_pem_text() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="-----BEGIN CERTIFICATE-----\n")

    with Client("http://cp.test", None, transport=httpx.MockTransport(handle)) as c:
        assert c.ca_certificates("acme").startswith("-----BEGIN")
    assert seen[0].url.path == "/v1/ca" and seen[0].url.params["tenant"] == "acme"
