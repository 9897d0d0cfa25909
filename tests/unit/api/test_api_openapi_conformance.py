"""The OpenAPI document says what the API answers, and the API answers what the document says.

1. Every operation documents a non-empty 2xx answer (or a 204 without a body) and its problem
   answers, all with the one `Problem` schema; FastAPI's own 422 shape is gone.
2. Every operation is called on an in-process server: as the system admin on the resources of
   its tenant, without credentials, as a role without the permission, on another tenant's
   resources, and with bodies that are invalid, malformed or too large. Each answer's status must
   be documented, its media type must be the documented one, and its body must validate against
   the documented schema with every object closed (`additionalProperties: false` wherever the
   document does not say otherwise): a field the services send but the models do not name fails
   here, as does a field the models promise but the services do not send.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from cellplane_platform_support import Platform
from cellplane_tenancy_support import BODIES, Worlds, csr_pem, declared, fill, operations
from jsonschema import Draft202012Validator

from cellplane.api import models

PROBLEM_REF = "#/components/schemas/Problem"
# Answers that are not JSON: only their media type is checked.
_NOT_JSON = {
    "text/event-stream",
    "text/plain",
    "text/html",
    "application/x-tar",
    "application/x-pem-file",
}


def _closed(node: Any) -> Any:
    """`node` with every object schema that names its properties closed to others."""
    if isinstance(node, dict):
        out = {k: _closed(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


class Document:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = _closed(copy.deepcopy(doc.get("components", {})))

    def check(self, method: str, path: str, response: Any) -> list[str]:
        """What is wrong with `response` as an answer of `method path` (nothing: [])."""
        op = self.doc["paths"][path][method.lower()]
        status = str(response.status_code)
        where = f"{method} {path} -> {status}"
        documented = op["responses"].get(status)
        if documented is None:
            return [f"{where}: status not documented ({sorted(op['responses'])})"]
        content = documented.get("content")
        if not content:
            return [] if not response.content else [f"{where}: a body where none is documented"]
        media = response.headers.get("content-type", "").split(";")[0].strip()
        if media not in content:
            return [f"{where}: {media!r} is not documented ({sorted(content)})"]
        if media in _NOT_JSON:
            return []
        schema = {"components": self.components, **_closed(content[media]["schema"])}
        validator = Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
        return [f"{where}: {'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]]


@pytest.fixture
def document(plat: Platform) -> Document:
    return Document(plat.client.get("/openapi.json").json())


def test_every_operation_documents_a_2xx_body_and_its_problems(document: Document) -> None:
    failures: list[str] = []
    checked = 0
    for method, path, op in operations(document.doc):
        key = f"{method} {path}"
        responses = op["responses"]
        ok = {s: r for s, r in responses.items() if s.startswith("2")}
        if not ok:
            failures.append(f"{key}: no 2xx answer")
        for status, answer in ok.items():
            content = answer.get("content")
            if status == "204":
                if content:
                    failures.append(f"{key}: 204 with a body")
                continue
            if not content:
                failures.append(f"{key}: {status} without content")
            for media, body in (content or {}).items():
                if body.get("schema") in (None, {}):
                    failures.append(f"{key}: {status} {media} has an empty schema")
        problems = {s for s, r in responses.items() if s[0] in "45"}
        want = {"400"}
        if not path.startswith("/identity/"):
            if op.get("security"):
                want |= {"401", "403"}
            if "{" in path:
                want.add("404")
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                want.add("409")
            if "requestBody" in op:
                want |= {"413", "422"}
        if path.startswith(("/v1/", "/identity/")):  # the database's and the disk's own answers
            want.add("503")
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                want.add("507")
        if missing := want - problems:
            failures.append(f"{key}: error answers {sorted(missing)} not documented")
        for status in problems:
            for media, body in (responses[status].get("content") or {}).items():
                if media == "application/problem+json" and body["schema"] != {"$ref": PROBLEM_REF}:
                    failures.append(f"{key}: {status} is not a Problem")
        checked += 1
    assert checked > 80
    assert not failures, "\n".join(failures)
    text = str(document.doc)
    assert "HTTPValidationError" not in text
    problem = document.doc["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "instance", "errors"}
    assert set(problem["required"]) == {"type", "title", "status", "detail"}


def _call(plat: Platform, method: str, url: str, headers: dict[str, str], **kw: Any) -> Any:
    return plat.client.request(method, url, headers=headers, **kw)


def test_every_answer_matches_the_document(
    plat: Platform, busybox_archive: Path, document: Document
) -> None:
    worlds = Worlds(plat, busybox_archive)
    failures: list[str] = []
    seen: set[tuple[str, str, str]] = set()

    def check(method: str, path: str, r: Any) -> None:
        seen.add((method, path, str(r.status_code)))
        failures.extend(document.check(method, path, r))

    # A cell that ran (host, address, events) and a cluster with a task make the views full.
    cell = plat.create_cell("full", ports=[{"container_port": 80, "host_port": 18080}])
    assert cell.status_code == 202, cell.text
    plat.schedule()
    subject = plat.client.get("/v1/whoami", headers=plat.admin).json()["subject"]
    for method, path, op in operations(document.doc):
        if path.startswith("/identity/"):
            continue
        policy = declared(op)
        key = f"{method} {path}"
        for name in ("cell_id", "cluster_id"):  # a fresh one: not DELETING, cluster RUNNING
            if f"{{{name}}}" in path and method != "GET":
                worlds.a.ids.pop(name, None)
        worlds.refresh(worlds.a)  # and what an earlier DELETE removed
        body = BODIES[key](worlds.a) if key in BODIES else None
        if key == "POST /v1/certificates":
            body = {"csr": csr_pem(subject)}  # the caller's own user id as its CN
        if key == "DELETE /v1/tenants/{tenant}":
            created = plat.client.post("/v1/tenants", json={"name": "doomed"}, headers=plat.admin)
            assert created.status_code == 201, created.text
            worlds.a.ids["tenant"] = "doomed"
        if key == "POST /v1/projects/{project}/docker-endpoints":  # the worlds keep one: free it
            gone = plat.client.delete(
                f"/v1/projects/{worlds.a.project_id}/docker-endpoints", headers=plat.admin
            )
            assert gone.status_code == 204, gone.text
        if key == "POST /v1/agent/register":
            body = {
                "api_version": "agent/v1",
                "join_token": plat.join_token,
                "name": "h2",
                "address": "10.0.0.2",
                "capacity": {"cpu": 1, "memory_mb": 64, "disk_gb": 1},
            }
        own = fill(path, worlds.a, plat, worlds)
        if key == "DELETE /v1/projects/{project}":  # the world's project has cells: an empty one
            made = plat.client.post("/v1/projects", json={"name": "doomed"}, headers=plat.admin)
            assert made.status_code == 201, made.text
            own = "/v1/projects/doomed"
        a_cell, a_net = worlds.a.ids.get("cell_id"), worlds.a.ids.get("network")
        if key == "DELETE /v1/cells/{cell_id}/networks/{network}":  # a network it may leave
            joined = plat.client.post(
                f"/v1/cells/{a_cell}/networks", json={"network": a_net}, headers=plat.admin
            )
            assert joined.status_code == 200, joined.text
        agent = policy is not None and policy[0] != "bearer"
        admin = plat.agent if agent else plat.admin
        if key == "POST /v1/images":
            r = plat.client.post(
                "/v1/images?name=conformance",
                content=busybox_archive.read_bytes(),
                headers={**plat.admin, "Content-Type": "application/x-tar"},
            )
            check(method, path, r)
            continue
        # Refusals first (a DELETE that worked leaves nothing to refuse).
        if policy is not None:
            check(method, path, _call(plat, method, own, {}, json=body))
            if not agent:
                viewer = worlds.a.tokens["project-viewer"]
                check(method, path, _call(plat, method, own, viewer, json=body))
                if "{" in path and "host_id" not in path and "{name}" not in path:
                    other = fill(path, worlds.b, plat, worlds)
                    check(method, path, _call(plat, method, other, admin, json=body))
        if "requestBody" in op:
            check(method, path, _call(plat, method, own, admin, json={"\x00": 1}))
            check(
                method,
                path,
                _call(
                    plat,
                    method,
                    own,
                    {**admin, "Content-Type": "application/json"},
                    content=b"{not json",
                ),
            )
            big = b'{"x": "' + b"a" * (plat.svc.max_body_bytes + 10) + b'"}'
            check(
                method,
                path,
                _call(
                    plat, method, own, {**admin, "Content-Type": "application/json"}, content=big
                ),
            )
        if "{" in path and "host_id" not in path:
            missing = re.sub(r"\{(\w+)\}", "nosuch", path)
            check(method, path, _call(plat, method, missing, admin, json=body))
        check(method, path, _call(plat, method, own, admin, json=body))
        if key == "POST /v1/cells/{cell_id}/networks":  # the network free for its own DELETE
            left = plat.client.delete(f"/v1/cells/{a_cell}/networks/{a_net}", headers=plat.admin)
            assert left.status_code == 200, left.text
    assert not failures, "\n".join(failures)
    # The calls reached the answers that matter: a 2xx of nearly every operation, and each kind
    # of problem somewhere.
    ok = {(m, p) for m, p, s in seen if s.startswith("2")}
    ops = {(m, p) for m, p, _ in operations(document.doc) if not p.startswith("/identity/")}
    # Logs and exec go through the cell's host agent: tests/integration/cells call them.
    assert ops - ok == {("GET", "/v1/cells/{cell_id}/logs"), ("POST", "/v1/cells/{cell_id}/exec")}
    statuses = {s for _, _, s in seen}
    assert {"200", "201", "202", "204", "400", "401", "403", "404", "409", "413", "422"} <= statuses


def test_a_field_the_models_do_not_name_is_kept_not_dropped() -> None:
    """Answers are validated, never trimmed: a field a service adds still reaches clients."""
    view = {
        "id": "tnt-1",
        "name": "acme",
        "min_isolation": None,
        "created_at": "2026-01-01T00:00:00+00:00",
        "added_later": {"x": 1},
    }
    assert models.Tenant.model_validate(view).model_dump() == view


def test_the_identity_providers_answers_match_the_document(
    plat: Platform, document: Document
) -> None:
    """The OIDC endpoints' answers, successes and OAuth errors, as documented."""
    c = plat.client
    c.base_url = httpx.URL("https://testserver")  # authlib wants https for the token endpoint
    base = "/identity/default"
    failures: list[str] = []

    def check(method: str, path: str, r: Any) -> Any:
        failures.extend(document.check(method, "/identity/{tenant}" + path, r))
        return r

    password = "correct horse battery staple"
    r = c.post("/v1/users", json={"name": "alice", "password": password}, headers=plat.admin)
    assert r.status_code == 201, r.text
    svc = c.post(
        "/v1/clients",
        json={"name": "svc", "grant_types": ["client_credentials"]},
        headers=plat.admin,
    ).json()
    auth = (svc["client_id"], svc["client_secret"])
    cli = "cellplane-cli"

    check(
        "GET",
        "/.well-known/openid-configuration",
        c.get(f"{base}/.well-known/openid-configuration"),
    )
    check("GET", "/jwks", c.get(f"{base}/jwks"))
    check("GET", "/jwks", c.get("/identity/nosuch/jwks"))  # 404 problem
    grant = {"grant_type": "password", "client_id": cli, "username": "alice"}
    tokens = check(
        "POST",
        "/token",
        c.post(f"{base}/token", data={**grant, "password": password, "scope": "openid profile"}),
    ).json()
    check("POST", "/token", c.post(f"{base}/token", data={**grant, "password": "wrong"}))
    check("POST", "/token", c.post(f"{base}/token", data={"grant_type": "x"}, auth=(auth[0], "no")))
    check(
        "POST",
        "/token",
        c.post(f"{base}/token", content=b"{}", headers={"Content-Type": "application/json"}),
    )
    check(
        "POST",
        "/token",
        c.post(f"{base}/token", data={"grant_type": "client_credentials"}, auth=auth),
    )
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    check(
        "POST",
        "/introspect",
        c.post(f"{base}/introspect", data={"token": tokens["access_token"]}, auth=auth),
    )
    check(
        "POST", "/introspect", c.post(f"{base}/introspect", data={"token": "nonsense"}, auth=auth)
    )
    check("GET", "/userinfo", c.get(f"{base}/userinfo", headers=bearer))
    check("POST", "/userinfo", c.post(f"{base}/userinfo", headers=bearer))
    check("GET", "/userinfo", c.get(f"{base}/userinfo", headers={"Authorization": "Bearer x"}))
    check(
        "POST",
        "/revoke",
        c.post(f"{base}/revoke", data={"token": tokens["refresh_token"], "client_id": cli}),
    )
    check("GET", "/logout", c.get(f"{base}/logout", follow_redirects=False))
    check("GET", "/authorize", c.get(f"{base}/authorize", follow_redirects=False))
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": cli,
        "redirect_uri": "http://127.0.0.1:43123/callback",
        "scope": "openid",
        "state": "s",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    no_pkce = {k: v for k, v in params.items() if not k.startswith("code_")}
    check("GET", "/authorize", c.get(f"{base}/authorize", params=no_pkce, follow_redirects=False))
    page = check("GET", "/authorize", c.get(f"{base}/authorize", params=params)).text
    form = {
        html.unescape(m.group(1)): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    }
    login = {**form, "username": "alice", "password": password}
    r = check("POST", "/authorize", c.post(f"{base}/authorize", data=login, follow_redirects=False))
    assert r.status_code == 302, r.text
    assert not failures, "\n".join(failures)
