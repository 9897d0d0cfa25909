"""Lockout, one error for every failed login, rate limiting, malformed requests, LDAP
federation (against a stand-in directory) and the audit trail."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from oidc_support import CLI, PASSWORD, Oidc, payload
from sqlalchemy import select

from cellplane.identity.oidc import LOGIN_FAILED, RateLimiter
from cellplane.identity.oidc import login as oidc_mod
from cellplane.ids import utcnow
from cellplane.sealing import BIND_SECRET_COLUMN
from cellplane.state.identity_models import (
    AuditEvent,
    AuthCode,
    LdapConfig,
    OAuthClient,
    RefreshToken,
    RevokedToken,
    User,
)

TABLES = (User, RefreshToken, AuthCode, AuditEvent, RevokedToken, OAuthClient)


def counts(oidc: Oidc) -> tuple[int, ...]:
    return tuple(oidc.count(t) for t in TABLES)


def user_row(oidc: Oidc, name: str) -> dict[str, Any]:
    with oidc.plat.svc.db.reader() as s:
        u = s.scalar(select(User).where(User.name == name))
        assert u is not None
        return {
            "failed_logins": u.failed_logins,
            "locked_until": u.locked_until,
            "source": u.source,
            "password_hash": u.password_hash,
            "id": u.id,
        }


def events(oidc: Oidc, action: str) -> list[AuditEvent]:
    with oidc.plat.svc.db.reader() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        s.expunge_all()
    return rows


def test_lockout_after_repeated_failures_then_automatic_unlock(oidc: Oidc) -> None:
    oidc.add_user("lock")
    limit = oidc.provider.settings.max_failures
    # One failure from each of many addresses: no address is throttled, the account counts all.
    for i in range(limit):
        assert oidc.login_from(f"10.0.0.{i}", "lock", "wrong") == "failed"
        oidc.advance(1)
        if i < limit - 1:
            assert user_row(oidc, "lock")["failed_logins"] == i + 1
    assert user_row(oidc, "lock")["locked_until"] is not None
    # The right password no longer works from an unfamiliar address, and says nothing about why.
    locked = oidc.password_login("lock")
    assert locked.status_code == 400 and locked.json()["error_description"] == LOGIN_FAILED
    assert [e.outcome for e in events(oidc, "lockout")] == ["denied"]
    # Time passes: the lock ends by itself.
    oidc.advance(300)
    ok = oidc.password_login("lock")
    assert ok.status_code == 200, ok.text
    assert user_row(oidc, "lock")["failed_logins"] == 0
    assert user_row(oidc, "lock")["locked_until"] is None


def test_failures_spread_out_do_not_lock(oidc: Oidc) -> None:
    oidc.add_user("slow")
    for _ in range(6):
        assert oidc.password_login("slow", "wrong").status_code == 400
        oidc.advance(301)  # each failure comes after the window of the previous one
    assert user_row(oidc, "slow")["locked_until"] is None
    assert oidc.password_login("slow").status_code == 200


def test_every_failed_login_answers_the_same(oidc: Oidc, monkeypatch: pytest.MonkeyPatch) -> None:
    oidc.add_user("known")
    oidc.add_user("off", disabled=True)
    oidc.add_user("nopw", password=None)
    calls: list[str | None] = []
    real = oidc_mod.verify_password

    def counting(stored: str | None, password: str) -> bool:
        calls.append(stored)
        return real(stored, password)

    monkeypatch.setattr(oidc_mod, "verify_password", counting)
    answers = []
    for username, password in [
        ("nobody", PASSWORD),  # unknown user
        ("known", "wrong"),  # wrong password
        ("off", PASSWORD),  # disabled
        ("nopw", PASSWORD),  # no password set
        ("", ""),  # empty
    ]:
        before = len(calls)
        r = oidc.password_login(username, password)
        answers.append((r.status_code, r.json()))
        # Exactly one argon2 verification, real or against the dummy hash.
        assert len(calls) == before + 1, username
    assert len(set(map(repr, answers))) == 1, answers
    assert answers[0] == (400, {"error": "invalid_grant", "error_description": LOGIN_FAILED})
    assert calls[0] is None  # unknown user: the dummy hash
    failures = events(oidc, "login")
    assert len(failures) == 5 and all(e.outcome == "failure" for e in failures)
    assert {e.detail["reason"] for e in failures} >= {"unknown user", "wrong password", "disabled"}


def test_locked_account_answers_like_a_wrong_password(oidc: Oidc) -> None:
    oidc.add_user("lk")
    for i in range(oidc.provider.settings.max_failures):
        oidc.login_from(f"10.0.1.{i}", "lk", "wrong")
    locked = oidc.password_login("lk")
    unknown = oidc.password_login("nobody-at-all")
    assert (locked.status_code, locked.json()) == (unknown.status_code, unknown.json())


def test_rate_limit_answers_429_with_retry_after(oidc: Oidc) -> None:
    oidc.provider.limiter = RateLimiter(rate_per_s=1.0, burst=3)
    cid, secret = oidc.add_client("svc")
    codes = [
        oidc.token(grant_type="client_credentials", auth=(cid, secret)).status_code
        for _ in range(5)
    ]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = oidc.token(grant_type="client_credentials", auth=(cid, secret))
    assert r.status_code == 429 and r.json()["error"] == "temporarily_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    # Other tenants are other buckets.
    oidc.add_tenant("beta")
    other = oidc.token("beta", grant_type="client_credentials", auth=(cid, secret))
    assert other.status_code == 401  # reached the provider: that client is not beta's
    oidc.advance(2)
    assert oidc.token(grant_type="client_credentials", auth=(cid, secret)).status_code == 200


def test_rate_limiter_refills_and_forgets_old_keys() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=2, max_keys=2)
    assert limiter.take(("t", "a"), 0.0) is None
    assert limiter.take(("t", "a"), 0.0) is None
    wait = limiter.take(("t", "a"), 0.0)
    assert wait is not None and 0 < wait <= 0.1
    assert limiter.take(("t", "a"), 0.1) is None
    limiter.take(("t", "b"), 0.1)
    limiter.take(("t", "c"), 0.1)
    assert len(limiter._buckets) == 2 and ("t", "a") not in limiter._buckets


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "magic"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),  # not even a form
        ({"client_id": CLI}, 400, "unsupported_grant_type"),
        ({"grant_type": "password", "client_id": CLI, "password": "x"}, 400, "invalid_request"),
        ({"grant_type": "password", "client_id": CLI, "username": "x"}, 400, "invalid_request"),
        (
            {"grant_type": "password", "client_id": CLI, "username": "u" * 10_000, "password": "x"},
            400,
            "invalid_request",
        ),
        (
            {"grant_type": "password", "client_id": CLI, "username": "u" * 200, "password": "x"},
            400,
            "invalid_request",
        ),
        (
            {"grant_type": "password", "client_id": CLI, "username": "u", "password": "p" * 2000},
            400,
            "invalid_request",
        ),
        ({"grant_type": "password", "username": "u", "password": "x"}, 401, "invalid_client"),
        ({"grant_type": "refresh_token", "client_id": CLI}, 400, "invalid_request"),
        (
            {"grant_type": "refresh_token", "client_id": CLI, "refresh_token": "r" * 300},
            400,
            "invalid_grant",
        ),
        ({"grant_type": "authorization_code", "client_id": CLI}, 400, "invalid_request"),
        (
            {"grant_type": "authorization_code", "client_id": CLI, "code": "nope"},
            400,
            "invalid_grant",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "x" * 5000, "client_secret": "y"},
            400,
            "invalid_client",
        ),
        (
            {
                "grant_type": "password",
                "client_id": CLI,
                "username": "u",
                "password": "p",
                "scope": "root",
            },
            400,
            "invalid_grant",
        ),
    ],
)
def test_malformed_token_requests_get_oauth_errors_and_change_nothing(
    oidc: Oidc, form: dict[str, str], status: int, error: str
) -> None:
    before = counts(oidc)
    r = oidc.token(**form)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert r.headers["cache-control"] == "no-store"
    after = counts(oidc)
    if error == "invalid_grant" and form.get("grant_type") == "password":
        # A failed login is audited (and nothing else changes).
        assert after[:3] == before[:3] and after[3] == before[3] + 1
    else:
        assert after == before


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"grant_type": "password"}', {"Content-Type": "application/json"}, 400),
        (b"grant_type=password&grant_type=client_credentials", {}, 400),
        (b"\xff\xfe=\x00", {}, 400),
        (b"a=" + b"b" * 70_000, {}, 413),
        (b"username=" + b"u" * 9000 + b"&grant_type=password&client_id=cellplane-cli", {}, 400),
    ],
    ids=["json", "repeated", "not-utf8", "huge-body", "huge-field"],
)
def test_malformed_bodies_are_refused(
    oidc: Oidc, content: bytes, headers: dict[str, str], status: int
) -> None:
    before = counts(oidc)
    hdrs = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    r = oidc.client.post(oidc.url("/token"), content=content, headers=hdrs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == "invalid_request"
    assert counts(oidc) == before


def test_garbage_basic_auth_is_invalid_client(oidc: Oidc) -> None:
    r = oidc.client.post(
        oidc.url("/token"),
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic %%%not-base64"},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


# --- LDAP federation (the directory is a stand-in; the real one is tested elsewhere) ---------


@pytest.fixture
def directory(oidc: Oidc, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fake `cellplane.identity.ldap` whose `authenticate` knows one user."""
    import cellplane.identity.ldap as real_ldap

    state: dict[str, Any] = {"calls": 0, "roles": ("tenant-admin",), "down": False}
    fake = types.ModuleType("cellplane.identity.ldap")

    class LdapError(Exception):
        pass

    class LdapSettings:
        def __init__(self, **kwargs: Any) -> None:
            state["settings"] = kwargs

    class LdapUser:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update(kw)

    def authenticate(settings: Any, username: str, password: str) -> Any:
        state["calls"] += 1
        if state["down"]:
            raise LdapError("unreachable")
        if username == "lara" and password == "ldap-pw":
            return LdapUser(
                dn="uid=lara,ou=people,dc=example,dc=org",
                username="lara",
                email="lara@example.org",
                display_name="Lara Directory",
                groups=("admins",),
                roles=state["roles"],
            )
        return None

    fake.LdapError = LdapError  # type: ignore[attr-defined]
    fake.LdapSettings = LdapSettings  # type: ignore[attr-defined]
    fake.HostPolicy = real_ldap.HostPolicy  # type: ignore[attr-defined]
    fake.authenticate = authenticate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cellplane.identity.ldap", fake)
    import cellplane.identity

    monkeypatch.setattr(cellplane.identity, "ldap", fake, raising=False)
    tid = oidc.tenant_id()
    with oidc.plat.svc.db.session() as s:
        s.add(
            LdapConfig(
                tenant_id=tid,
                url="ldap://127.0.0.1:1",
                bind_dn="cn=svc,dc=example,dc=org",
                bind_secret=oidc.plat.svc.sealer.seal("svc-secret", BIND_SECRET_COLUMN),
                user_base="ou=people,dc=example,dc=org",
                user_filter="",
                group_base="ou=groups,dc=example,dc=org",
                group_filter="",
                attributes={"username": "uid", "group_name_attribute": "cn"},
                group_roles={"admins": "tenant-admin"},
                updated_at=utcnow(),
            )
        )
    return state


def test_ldap_user_is_federated_and_refresh_keeps_directory_roles(
    oidc: Oidc, directory: dict[str, Any]
) -> None:
    r = oidc.password_login("lara", "ldap-pw", scope="openid email")
    assert r.status_code == 200, r.text
    body = r.json()
    claims = payload(body["access_token"])
    assert claims["roles"] == ["tenant-admin"] and claims["name"] == "lara"
    row = user_row(oidc, "lara")
    assert row["source"] == "ldap" and row["password_hash"] is None
    assert directory["settings"]["group_name_attribute"] == "cn"
    assert directory["settings"]["attributes"] == {"username": "uid"}
    refreshed = oidc.token(
        grant_type="refresh_token", client_id=CLI, refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200
    assert payload(refreshed.json()["access_token"])["roles"] == ["tenant-admin"]
    # The family's lifetime is absolute (12 h): rotation does not extend it.
    oidc.advance(12 * 3600 + 1)
    late = oidc.token(
        grant_type="refresh_token", client_id=CLI, refresh_token=refreshed.json()["refresh_token"]
    )
    assert late.status_code == 400
    # A second login updates the same row; wrong passwords and a dead directory fail alike.
    assert oidc.password_login("lara", "ldap-pw").status_code == 200
    assert user_row(oidc, "lara")["id"] == row["id"]
    wrong = oidc.password_login("lara", "nope")
    directory["down"] = True
    down = oidc.password_login("lara", "ldap-pw")
    assert (
        wrong.json() == down.json() == {"error": "invalid_grant", "error_description": LOGIN_FAILED}
    )


def test_local_users_do_not_go_to_the_directory(oidc: Oidc, directory: dict[str, Any]) -> None:
    oidc.add_user("lara")  # a local user of the same name wins
    assert oidc.password_login("lara", "ldap-pw").status_code == 400
    assert oidc.password_login("lara").status_code == 200
    assert directory["calls"] == 0


def test_settings_come_from_services_then_the_environment(oidc: Oidc) -> None:
    from cellplane.identity.oidc import OidcSettings, settings_of

    svc = oidc.plat.svc
    assert settings_of(svc, {}) == OidcSettings()
    custom = OidcSettings(max_failures=3, rate_per_s=5.0)
    svc.oidc = custom  # type: ignore[attr-defined]
    assert settings_of(svc, {}) is custom
    env = {"CELLPLANE_OIDC_RATE_PER_S": "1000", "CELLPLANE_OIDC_MAX_FAILURES": "7"}
    got = settings_of(svc, env)
    assert (got.rate_per_s, got.max_failures, got.lock_s) == (1000.0, 7, custom.lock_s)
