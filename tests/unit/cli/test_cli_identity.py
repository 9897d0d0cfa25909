"""The identity commands end to end against the real in-process server.

`login`, `logout`, `whoami` and the directory nouns run through the real SDK whose httpx
transport is a FastAPI TestClient's, against a seeded server (tests/unit/api/platform_support.py)
reached as https://testserver (the OAuth endpoints refuse plain http off loopback). The CLI
configuration is a private file per test, so sessions, refreshes and rotations are the real ones.
"""

from __future__ import annotations

import json
import stat
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cellplane_platform_support import Template, make_services
from cryptography import x509
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from cellplane.api.app import create_app
from cellplane.cli import login, output
from cellplane.cli.main import app
from cellplane.client import CellplaneError, Client, config, credentials
from cellplane.services.context import Services

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

SERVER = "https://testserver"
PASSWORD = "correct horse battery staple"


@dataclass
class Env:
    svc: Services
    http: TestClient
    transport: httpx.BaseTransport
    admin_token: str
    path: Path
    runner: CliRunner

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def cli(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, list(args), input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str, input: str | None = None) -> Any:
        return json.loads(self.ok(*args, "-o", "json", input=input).stdout)

    def add_user(self, name: str, role: str | None = "tenant-admin") -> str:
        r = self.http.post(
            "/v1/users", json={"name": name, "password": PASSWORD}, headers=self.admin
        )
        assert r.status_code == 201, r.text
        if role:
            body = {"role": role, "user": name}
            a = self.http.post("/v1/role-assignments", json=body, headers=self.admin)
            assert a.status_code == 201, a.text
        return str(r.json()["id"])

    def login(self, name: str = "alice", *extra: str) -> Result:
        return self.ok("login", "--server", SERVER, "-u", name, "--password-stdin", *extra,
                       input=PASSWORD + "\n")  # fmt: skip

    def use_admin_token(self) -> None:
        config.save_config(SERVER, self.admin_token)

    def document(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def session(self) -> dict[str, Any]:
        session: dict[str, Any] = self.document()["session"]
        return session

    def edit_session(self, **changes: Any) -> None:
        doc = self.document()
        doc["session"].update(changes)
        self.path.write_text(json.dumps(doc))

    def token(self, **form: str) -> httpx.Response:
        r: httpx.Response = self.http.post("/identity/default/token", data=form)
        return r


@pytest.fixture
def env(tmp_path: Path, template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for name in ("CELLPLANE_SERVER", "CELLPLANE_TOKEN", "CELLPLANE_CA_CERT", "CELLPLANE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "cfg" / "config.json"
    monkeypatch.setenv("CELLPLANE_CONFIG", str(path))
    svc = make_services(tmp_path, template)
    with TestClient(create_app(svc, run_controllers=False), base_url=SERVER) as http:
        transport: httpx.BaseTransport = http._transport
        monkeypatch.setattr(login, "transport_factory", lambda: transport)
        monkeypatch.setattr(
            output, "client_factory", lambda: Client.from_config(transport=transport)
        )
        yield Env(svc, http, transport, template.admin_token, path, CliRunner())
    svc.db.dispose()


# -- login, whoami, the stored session -------------------------------------------------------------


def test_login_with_a_password_stores_a_private_session(env: Env) -> None:
    uid = env.add_user("alice")
    result = env.login()
    assert "Logged in to https://testserver as alice (user, tenant default)" in result.stdout
    assert stat.S_IMODE(env.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.path.parent.stat().st_mode) == 0o700
    text = env.path.read_text()
    assert PASSWORD not in text
    session = env.session()
    assert session["tenant"] == "default" and session["kind"] == "user"
    assert session["username"] == "alice" and session["subject"] == uid
    assert session["client_id"] == "cellplane-cli" and session["client_secret"] is None
    assert session["refresh_token"] and session["expires_at"] > time.time() + 200
    assert session["token_endpoint"] == f"{SERVER}/identity/default/token"
    # Tokens are never printed.
    for secret in (session["access_token"], session["refresh_token"]):
        assert secret not in result.stdout + result.stderr
    me = env.json("whoami")
    assert me["subject"] == uid and me["tenant"] == "default" and me["kind"] == "user"
    assert me["roles"] == ["tenant-admin"]
    table = env.ok("whoami").stdout
    assert "alice" in table and "tenant-admin" in table and "login session" in table


def test_login_failures_say_why_and_store_nothing(env: Env) -> None:
    env.add_user("alice")
    bad = env.cli("login", "--server", SERVER, "-u", "alice", "--password-stdin", input="nope\n")
    assert bad.exit_code == 1
    assert "login failed: invalid username or password" in bad.stderr
    assert not env.path.exists()
    unknown = env.cli(
        "login", "--server", SERVER, "--tenant", "nope", "-u", "alice", "--password-stdin",
        input=PASSWORD + "\n",
    )  # fmt: skip
    assert unknown.exit_code == 1 and "tenant 'nope' does not exist" in unknown.stderr
    # The password is never a flag value.
    flag = env.cli("login", "--server", SERVER, "-u", "alice", "--password", PASSWORD)
    assert flag.exit_code == 2
    both = env.cli("login", "--server", SERVER, "--client-id", "x", "-u", "alice")
    assert both.exit_code == 2
    none = env.cli("login", "-u", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert none.exit_code == 1 and "no server" in none.stderr


def test_login_prompts_for_the_password_when_not_on_stdin(env: Env) -> None:
    env.add_user("alice")
    result = env.ok("login", "--server", SERVER, input=f"alice\n{PASSWORD}\n")
    assert "as alice" in result.stdout
    assert PASSWORD not in result.stdout  # hidden input is not echoed


def test_an_expiring_access_token_is_refreshed_and_the_rotation_persisted(env: Env) -> None:
    env.add_user("alice")
    env.svc.tokens.access_ttl_s = 10  # always within the 30 s margin: every command refreshes
    env.login()
    first = env.session()
    assert env.json("whoami")["name"] == "alice"
    second = env.session()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert stat.S_IMODE(env.path.stat().st_mode) == 0o600
    # The stored token is the newest: refreshing again works (an old one would end the family).
    assert env.json("whoami")["name"] == "alice"
    third = env.session()
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    # The first token is spent.
    reuse = env.token(
        grant_type="refresh_token", refresh_token=first["refresh_token"], client_id="cellplane-cli"
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"


def test_a_401_renews_once_and_retries(env: Env) -> None:
    env.add_user("alice")
    env.login()
    before = env.session()
    env.edit_session(access_token="not.a.token", expires_at=time.time() + 3600)
    assert env.json("whoami")["name"] == "alice"
    after = env.session()
    assert after["access_token"] not in ("not.a.token", before["access_token"])
    assert after["refresh_token"] != before["refresh_token"]


def test_a_session_that_cannot_be_renewed_asks_to_log_in_again(env: Env) -> None:
    env.add_user("alice")
    env.login()
    # A new password ends the user's sessions: the refresh token is refused.
    r = env.http.patch(
        "/v1/users/alice", json={"password": "another long password"}, headers=env.admin
    )
    assert r.status_code == 200, r.text
    env.edit_session(expires_at=0)
    result = env.cli("whoami")
    assert result.exit_code == 1
    assert "Session expired" in result.stderr and "cellplane login" in result.stderr
    assert env.session()["refresh_token"] is None and env.session()["access_token"] == ""
    again = env.cli("whoami")
    assert again.exit_code == 1 and "Session expired" in again.stderr


def test_another_process_renewal_is_adopted_without_a_new_request(env: Env) -> None:
    env.add_user("alice")
    env.svc.tokens.access_ttl_s = 10
    env.login()
    conf = config.load_config()
    assert conf.session is not None
    a = credentials.SessionCredentials(conf.session, conf.path)
    b = credentials.SessionCredentials(conf.session, conf.path)  # a second process, same file
    with httpx.Client(transport=env.transport) as http:
        token_a = a.access_token(http)
        rotated = env.session()["refresh_token"]
        # b's copy is stale, its token expiring: it takes a's renewal from the file (which is
        # not itself expiring: lengthen it as if the server's lifetime were longer).
        env.edit_session(expires_at=time.time() + 3600)
        assert b.access_token(http) == token_a
    assert env.session()["refresh_token"] == rotated


def test_logout_revokes_the_tokens_and_forgets_the_session(env: Env) -> None:
    env.add_user("alice")
    env.login()
    session = env.session()
    result = env.ok("logout")
    assert "Logged out of https://testserver" in result.stdout
    assert "session" not in env.document()
    refresh = env.token(
        grant_type="refresh_token",
        refresh_token=session["refresh_token"],
        client_id="cellplane-cli",
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    who = env.http.get("/v1/whoami", headers={"Authorization": f"Bearer {session['access_token']}"})
    assert who.status_code == 401
    assert "not logged in" in env.ok("logout").stdout
    assert env.cli("whoami").exit_code == 1  # no credentials at all now


def test_a_session_takes_precedence_over_the_stored_token_until_logout(env: Env) -> None:
    env.add_user("alice")
    env.use_admin_token()
    assert env.json("whoami")["name"] == "admin"
    env.login()
    assert env.document()["token"] == env.admin_token  # kept: it is not shown again
    assert env.json("whoami")["name"] == "alice"
    result = env.ok("logout")
    assert "still holds a token" in result.stderr
    assert env.json("whoami")["name"] == "admin"


def test_service_account_login_and_renewal_with_client_credentials(env: Env) -> None:
    env.add_user("alice")
    env.login()
    created = env.json("client", "create", "deployer")
    cid, secret = created["client_id"], created["client_secret"]
    env.ok("role", "assign", "project-member", "--client", "deployer")
    env.ok("logout")
    bad = env.cli("login", "--server", SERVER, "--client-id", cid, "--client-secret-stdin",
                  input="wrong\n")  # fmt: skip
    assert bad.exit_code == 1 and "login failed: invalid client id or secret" in bad.stderr
    result = env.ok(
        "login", "--server", SERVER, "--client-id", cid, "--client-secret-stdin",
        input=secret + "\n",
    )  # fmt: skip
    assert "as deployer (service, tenant default)" in result.stdout
    assert secret not in result.stdout + result.stderr
    assert stat.S_IMODE(env.path.stat().st_mode) == 0o600
    session = env.session()
    # No refresh token for client_credentials: the secret renews it (documented, file 0600).
    assert session["kind"] == "service" and session["refresh_token"] is None
    assert session["client_id"] == cid and session["client_secret"] == secret
    me = env.json("whoami")
    assert me["kind"] == "service" and me["roles"] == ["project-member"]
    env.edit_session(expires_at=0)
    assert env.json("whoami")["subject"] == cid
    assert env.session()["access_token"] != session["access_token"]
    env.ok("logout")
    assert "session" not in env.document()


# -- TLS trust at login ----------------------------------------------------------------------------


def test_trust_server_ca_stores_the_root_and_prints_its_fingerprint(env: Env) -> None:
    env.add_user("alice")
    wrong = env.cli("login", "--server", SERVER, "-u", "alice", "--password-stdin",
                    "--trust-server-ca", "--ca-fingerprint", "00" * 32,
                    input=PASSWORD + "\n")  # fmt: skip
    assert wrong.exit_code == 1 and "expected fingerprint" in wrong.stderr
    result = env.login("alice", "--trust-server-ca")
    assert "SHA-256 fingerprint:" in result.stderr
    ca = Path(env.document()["ca_cert"])
    assert ca.parent == env.path.parent
    (root,) = x509.load_pem_x509_certificates(ca.read_bytes())
    assert root.subject == root.issuer
    plain = env.cli("login", "--server", "http://testserver", "--trust-server-ca")
    assert plain.exit_code == 2


def test_trust_server_ca_fetches_through_the_sdk_and_reports_a_bad_answer(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unverified fetch is the SDK's `ca_certificates` (GET /v1/ca); an error answer or a
    body that is not PEM fails the login and stores nothing."""
    seen: list[str] = []

    def answer(status: int, body: bytes) -> httpx.BaseTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(f"{request.method} {request.url.path} {request.headers['user-agent']}")
            return httpx.Response(status, content=body)

        return httpx.MockTransport(handle)

    for status, body, message in [
        (404, b'{"title": "Not Found"}', "GET /v1/ca: Not Found (404)"),
        (200, b"not a certificate", "GET /v1/ca did not answer PEM"),
    ]:
        transport = answer(status, body)
        monkeypatch.setattr(login, "transport_factory", lambda t=transport: t)
        result = env.cli("login", "--server", SERVER, "-u", "alice", "--trust-server-ca")
        assert result.exit_code == 1, result.stderr
        assert f"cannot fetch the CA of {SERVER}" in result.stderr and message in result.stderr
    assert seen == ["GET /v1/ca cellplane-sdk"] * 2
    assert not env.path.exists()


def test_ca_file_is_checked_and_recorded(env: Env, tmp_path: Path) -> None:
    env.add_user("alice")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    bad = env.cli("login", "--server", SERVER, "-u", "alice", "--ca-file", str(junk))
    assert bad.exit_code == 2
    pem = env.http.get("/v1/ca").content
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pem)
    env.login("alice", "--ca-file", str(ca))
    assert env.document()["ca_cert"] == str(ca.resolve())


# -- tenants, users, groups, clients, roles ---------------------------------------------------------


def test_tenant_commands(env: Env) -> None:
    env.use_admin_token()
    result = env.ok("tenant", "create", "acme", "--admin-name", "boss")
    assert "tenant acme" in result.stdout and "admin password:" in result.stdout
    assert "shown only now" in result.stderr
    assert "acme" in [t["name"] for t in env.json("tenant", "ls")]
    assert env.json("tenant", "show", "acme")["name"] == "acme"
    created = env.json("tenant", "create", "beta", "--admin-password-stdin", input=PASSWORD + "\n")
    assert "password" not in created["admin"]  # chosen, not generated: not echoed
    # Its admin logs in to the new tenant.
    env.ok("login", "--server", SERVER, "--tenant", "beta", "-u", "admin", "--password-stdin",
           input=PASSWORD + "\n")  # fmt: skip
    me = env.json("whoami")
    assert me["tenant"] == "beta" and me["roles"] == ["tenant-admin"]
    env.ok("logout")
    assert "deleted" in env.ok("tenant", "delete", "acme").stdout
    missing = env.cli("tenant", "show", "acme")
    assert missing.exit_code == 1 and "404" in missing.stderr


def test_user_commands(env: Env) -> None:
    env.add_user("alice")
    env.login()
    result = env.ok("user", "create", "bob", "--email", "bob@example.org")
    assert "password:" in result.stdout and "shown only now" in result.stderr
    carol = env.json("user", "create", "carol", "--password-stdin", input=PASSWORD + "\n")
    assert "password" not in carol
    names = [u["name"] for u in env.json("user", "ls")]
    assert {"alice", "bob", "carol"} <= set(names)
    assert env.json("user", "show", "bob")["email"] == "bob@example.org"
    updated = env.json("user", "update", "bob", "--display-name", "Bob B", "--disable")
    assert updated["display_name"] == "Bob B" and updated["disabled"] is True
    assert "disabled" in env.ok("user", "ls").stdout
    assert env.json("user", "update", "bob", "--enable", "--unlock")["disabled"] is False
    env.ok("user", "update", "carol", "--password-stdin", input="a brand new password\n")
    assert "deleted" in env.ok("user", "delete", "carol").stdout
    short = env.cli("user", "create", "dave", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "12 characters" in short.stderr
    assert env.cli("user", "update", "bob").exit_code == 2  # nothing to change
    assert env.cli("user", "show", "carol").exit_code == 1


def test_group_commands(env: Env) -> None:
    env.add_user("alice")
    env.add_user("bob", role=None)
    env.login()
    env.ok("group", "create", "devs")
    added = env.ok("group", "add-member", "devs", "bob")
    assert "bob added to group devs" in added.stdout
    assert env.json("group", "show", "devs")["members"] == ["bob"]
    assert [g["members"] for g in env.json("group", "ls")] == [["bob"]]
    assert env.json("group", "remove-member", "devs", "bob")["members"] == []
    env.ok("group", "delete", "devs")
    missing = env.cli("group", "add-member", "devs", "bob")
    assert missing.exit_code == 1 and "group 'devs' does not exist" in missing.stderr


def test_client_commands(env: Env) -> None:
    env.add_user("alice")
    env.login()
    result = env.ok("client", "create", "ci")
    assert "client secret:" in result.stdout and "shown only now" in result.stderr
    assert "--client-secret-stdin" in result.stderr
    web = env.json("client", "create", "web", "--public", "--grant", "authorization_code",
                   "--redirect-uri", "https://app.example/cb")  # fmt: skip
    assert web["public"] is True and "client_secret" not in web
    assert {c["name"] for c in env.json("client", "ls")} >= {"ci", "web"}
    shown = env.json("client", "show", "web")
    assert shown["redirect_uris"] == ["https://app.example/cb"]
    assert shown["grant_types"] == ["authorization_code"]
    rotated = env.ok("client", "rotate-secret", "ci")
    assert "client secret:" in rotated.stdout
    refused = env.cli("client", "rotate-secret", "web")
    assert refused.exit_code == 1 and "public" in refused.stderr
    bad = env.cli("client", "create", "x", "--public", "--grant", "client_credentials")
    assert bad.exit_code == 1 and "client_credentials" in bad.stderr
    env.ok("client", "delete", "web")
    assert env.cli("client", "show", "web").exit_code == 1


def test_role_commands(env: Env) -> None:
    env.add_user("alice")
    env.add_user("bob", role=None)
    env.login()
    assigned = env.json("role", "assign", "project-viewer", "--user", "bob", "--project", "default")
    assert assigned["scope"] == "project" and assigned["project"] == "default"
    assert assigned["subject"]["name"] == "bob"
    ids = [a["id"] for a in env.json("role", "ls")]
    assert assigned["id"] in ids
    assert "revoked" in env.ok("role", "revoke", assigned["id"]).stdout
    assert assigned["id"] not in [a["id"] for a in env.json("role", "ls")]
    two = env.cli("role", "assign", "project-viewer", "--user", "bob", "--group", "g")
    assert two.exit_code == 2
    bad = env.cli("role", "assign", "overlord", "--user", "bob")
    assert bad.exit_code == 1 and "not a tenant role" in bad.stderr


# -- quotas, certificates, audit ------------------------------------------------------------------


def test_quota_commands(env: Env) -> None:
    env.use_admin_token()
    tenant = env.json("quota", "set", "--tenant", "default", "--cpu", "8", "--cells", "20")
    assert tenant["limits"]["cpu"] == 8 and tenant["limits"]["cells"] == 20
    env.add_user("alice")
    env.login()
    project = env.json("quota", "set", "--project", "default", "--cpu", "2", "--cells", "5")
    assert project["limits"]["cpu"] == 2 and project["limits"]["cells"] == 5
    # Only the named limits change; `none` removes one.
    project = env.json("quota", "set", "--project", "default", "--cells", "none")
    assert project["limits"]["cpu"] == 2 and project["limits"]["cells"] is None
    shown = env.json("quota", "show")  # the caller's tenant
    assert shown["scope"] == "tenant" and shown["allocated"]["cpu"] == 2
    assert "unlimited" in env.ok("quota", "show", "--project", "default").stdout
    denied = env.cli("quota", "set", "--tenant", "default", "--cpu", "1")
    assert denied.exit_code == 1 and "403" in denied.stderr
    assert env.cli("quota", "set", "--project", "default").exit_code == 2
    assert env.cli("quota", "show", "--tenant", "a", "--project", "b").exit_code == 2
    assert env.cli("quota", "set", "--project", "default", "--cells", "-1").exit_code == 2


def test_cert_request_writes_a_private_key_and_a_certificate_for_the_user(
    env: Env, tmp_path: Path
) -> None:
    uid = env.add_user("alice")
    env.login()
    out = tmp_path / "certs"
    result = env.ok("cert", "request", "--out-dir", str(out), "--days", "7")
    assert "curl --cert" in result.stdout and "docker" in result.stdout
    key, cert, chain = out / "key.pem", out / "cert.pem", out / "chain.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == uid
    assert len(x509.load_pem_x509_certificates(chain.read_bytes())) == 2
    again = env.cli("cert", "request", "--out-dir", str(out))
    assert again.exit_code == 1 and "--force" in again.stderr
    (listed,) = env.json("cert", "ls")
    assert listed["subject"] == uid and listed["revoked_at"] is None
    revoked = env.json("cert", "revoke", listed["serial"])
    assert revoked["revoked_at"] is not None
    missing = env.cli("cert", "revoke", "abcdef")
    assert missing.exit_code == 1 and "404" in missing.stderr


def test_audit_ls(env: Env) -> None:
    env.add_user("alice")
    env.login()
    env.ok("group", "create", "ops")
    events = env.json("audit", "ls", "--action", "group.create")
    assert [e["target"] for e in events] == ["ops"]
    assert {e["action"] for e in env.json("audit", "ls", "--limit", "500")} >= {"login"}
    assert "login" in env.ok("audit", "ls").stdout
    env.ok("logout")
    env.use_admin_token()
    assert env.json("audit", "ls", "--all-tenants", "--outcome", "success")
    assert env.cli("audit", "ls", "--limit", "0").exit_code == 2
    env.add_user("bob", role="project-viewer")
    env.login("bob")
    denied = env.cli("audit", "ls")
    assert denied.exit_code == 1 and "403" in denied.stderr


# -- the configuration file and the SDK's credential provider -------------------------------------


def test_old_configuration_files_still_work(env: Env) -> None:
    env.path.parent.mkdir(mode=0o700)
    old = {"server": SERVER, "token": env.admin_token, "ca_cert": None}
    env.path.write_text(json.dumps(old))
    assert env.json("whoami")["name"] == "admin"
    conf = config.load_config()
    assert conf.session is None and credentials.credentials_of(conf) is None


def test_environment_token_wins_over_a_session_and_save_config_drops_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.add_user("alice")
    env.login()
    monkeypatch.setenv("CELLPLANE_TOKEN", env.admin_token)
    assert config.load_config().session is None
    assert env.json("whoami")["name"] == "admin"
    monkeypatch.delenv("CELLPLANE_TOKEN")
    monkeypatch.setenv("CELLPLANE_SERVER", "https://elsewhere")
    assert config.load_config().session is None  # the session is for another server
    monkeypatch.delenv("CELLPLANE_SERVER")
    assert config.load_config().session is not None
    config.save_config(SERVER, "cpt_new")  # e.g. `cellplane up` on a fresh data dir
    assert set(env.document()) == {"server", "token", "ca_cert"}


@pytest.mark.parametrize(
    "session",
    [[], {"server": SERVER}, {"server": SERVER, "tenant": "t", "kind": "user", "client_id": "c",
                              "token_endpoint": "e", "expires_at": "soon"}],
)  # fmt: skip
def test_bad_sessions_raise_config_error(env: Env, session: Any) -> None:
    env.path.parent.mkdir(mode=0o700)
    env.path.write_text(json.dumps({"server": SERVER, "session": session}))
    with pytest.raises(config.ConfigError, match="session"):
        config.load_config()


class _Provider:
    def __init__(self) -> None:
        self.tokens = ["t1", "t2"]
        self.refreshed: list[str | None] = []

    def access_token(self, http: httpx.Client) -> str | None:
        return self.tokens[0]

    def refresh(self, http: httpx.Client, rejected: str | None) -> str | None:
        self.refreshed.append(rejected)
        self.tokens.pop(0)
        return self.tokens[0] if self.tokens else None


def test_the_sdk_renews_once_after_a_401_and_sends_the_request_again() -> None:
    seen: list[tuple[str, str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("Authorization")
        seen.append((request.method, auth, request.headers.get("Idempotency-Key")))
        if auth != "Bearer t2":
            return httpx.Response(401, json={"title": "Unauthorized", "status": 401})
        return httpx.Response(201, json={"name": "p"})

    provider = _Provider()
    with Client(SERVER, None, transport=httpx.MockTransport(handler), credentials=provider) as c:
        assert c.create_project("p") == {"name": "p"}
        assert provider.refreshed == ["t1"]
        assert [a for _, a, _ in seen] == ["Bearer t1", "Bearer t2"]
        assert seen[0][2] == seen[1][2]  # the same idempotency key
        seen.clear()
        provider.tokens = ["t3", "t4"]  # t3 refused, then t4 refused too: one renewal only
        with pytest.raises(CellplaneError) as info:
            c.whoami()
        assert info.value.status == 401
        assert [a for _, a, _ in seen] == ["Bearer t3", "Bearer t4"]


def test_a_plain_token_client_is_unchanged() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer cpt_x"
        return httpx.Response(401, json={"title": "Unauthorized", "status": 401})

    with (
        Client(SERVER, "cpt_x", transport=httpx.MockTransport(handler)) as c,
        pytest.raises(CellplaneError) as info,
    ):
        c.whoami()
    assert info.value.status == 401
