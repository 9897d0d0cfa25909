"""The grants end to end through the HTTP endpoints: password, client credentials, refresh
rotation, authorization code + PKCE through the login form, userinfo, introspection, revocation
and logout."""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet
from oidc_support import CLI, LOOPBACK, PASSWORD, Oidc, hidden_fields, s256
from sqlalchemy import select

from cellplane.identity.passwords import needs_rehash
from cellplane.state.identity_models import AuditEvent, RefreshToken, User

VERIFIER = "dBjftJeZ4CVP-mJ0vB1ZbKFSm3J5Ey8XGc_zq8VktTaB3RRs"


def verify(oidc: Oidc, token: str, typ: str, tenant: str = "default") -> dict[str, Any]:
    """Check the signature against the published JWKS (joserfc, not our verifier)."""
    keys = KeySet.import_key_set(oidc.client.get(oidc.url("/jwks", tenant)).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == typ
    claims: dict[str, Any] = dict(decoded.claims)
    return claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_actions(oidc: Oidc) -> list[tuple[str, str]]:
    with oidc.plat.svc.db.reader() as s:
        return [
            (e.action, e.outcome) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_password_grant_issues_access_id_and_refresh_tokens(oidc: Oidc) -> None:
    uid = oidc.add_user("alice", email="alice@example.org")
    r = oidc.password_login("alice", scope="openid profile email")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["refresh_token"] and "." not in body["refresh_token"]  # opaque
    at = verify(oidc, body["access_token"], "at+jwt")
    assert at["sub"] == uid and at["aud"] == "cellplane" and at["client_id"] == CLI
    assert at["iss"] == oidc.url("") and at["tenant"] == "default"
    assert at["roles"] == ["tenant-admin"] and at["scope"] == "openid profile email"
    assert at["exp"] - at["iat"] == 300
    idt = verify(oidc, body["id_token"], "JWT")
    assert idt["aud"] == CLI and idt["sub"] == uid
    assert idt["email"] == "alice@example.org" and idt["preferred_username"] == "alice"
    assert abs(idt["auth_time"] - time.time()) < 60
    # The API takes the token as it is.
    who = oidc.client.get("/v1/whoami", headers=bearer(body["access_token"]))
    assert who.status_code == 200 and who.json()["subject"] == uid
    # The refresh token is stored hashed, never in the clear.
    with oidc.plat.svc.db.reader() as s:
        hashes = list(s.scalars(select(RefreshToken.token_hash)))
    assert len(hashes) == 1 and body["refresh_token"] not in hashes[0]
    assert ("login", "success") in audit_actions(oidc)
    assert ("token", "success") in audit_actions(oidc)


def test_password_grant_without_openid_has_no_id_token(oidc: Oidc) -> None:
    oidc.add_user("plain")
    body = oidc.password_login("plain").json()
    assert "id_token" not in body and "scope" not in verify(oidc, body["access_token"], "at+jwt")


def test_client_credentials_roles_come_from_the_clients_assignments(oidc: Oidc) -> None:
    cid, secret = oidc.add_client("deployer", roles=("project-member",))
    basic = oidc.token(grant_type="client_credentials", auth=(cid, secret))
    post = oidc.token(grant_type="client_credentials", client_id=cid, client_secret=secret)
    for r in (basic, post):
        assert r.status_code == 200, r.text
        assert "refresh_token" not in r.json()
        claims = verify(oidc, r.json()["access_token"], "at+jwt")
        assert claims["sub"] == cid and claims["kind"] == "service"
        assert claims["roles"] == ["project-member"]
    who = oidc.client.get("/v1/whoami", headers=bearer(basic.json()["access_token"])).json()
    assert who["kind"] == "service" and who["roles"] == ["project-member"]
    wrong = oidc.token(grant_type="client_credentials", auth=(cid, secret + "x"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert "www-authenticate" in wrong.headers
    public = oidc.token(grant_type="client_credentials", client_id=CLI)
    assert public.status_code in (400, 401) and public.json()["error"] == "invalid_client"


def test_client_may_only_use_its_grant_types(oidc: Oidc) -> None:
    cid, secret = oidc.add_client("cc-only")
    oidc.add_user("bob")
    r = oidc.token(grant_type="password", username="bob", password=PASSWORD, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_refresh_rotates_within_the_family(oidc: Oidc) -> None:
    oidc.add_user("carol")
    first = oidc.password_login("carol", scope="openid profile").json()
    second = oidc.token(
        grant_type="refresh_token", client_id=CLI, refresh_token=first["refresh_token"]
    )
    assert second.status_code == 200, second.text
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert new["scope"] == "openid profile" and "id_token" in new
    third = oidc.token(
        grant_type="refresh_token", client_id=CLI, refresh_token=new["refresh_token"]
    )
    assert third.status_code == 200
    with oidc.plat.svc.db.reader() as s:
        rows = s.execute(
            select(RefreshToken.family_id, RefreshToken.used_at).order_by(RefreshToken.id)
        ).all()
    assert len(rows) == 3 and len({family for family, _ in rows}) == 1
    assert [used is not None for _, used in rows] == [True, True, False]
    # A narrower scope may be asked for, a wider one not.
    wider = oidc.token(
        grant_type="refresh_token",
        client_id=CLI,
        refresh_token=third.json()["refresh_token"],
        scope="openid profile email",
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_refresh_token_of_another_client_is_refused(oidc: Oidc) -> None:
    oidc.add_user("dave")
    cid, secret = oidc.add_client("web", grant_types=("password", "refresh_token"))
    rt = oidc.password_login("dave")
    rt_cli = rt.json()["refresh_token"]
    r = oidc.token(grant_type="refresh_token", refresh_token=rt_cli, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # Not spent by the foreign attempt: the real client still refreshes.
    ok = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt_cli)
    assert ok.status_code == 200


def test_disabled_user_cannot_refresh(oidc: Oidc) -> None:
    uid = oidc.add_user("erin")
    rt = oidc.password_login("erin").json()["refresh_token"]
    with oidc.plat.svc.db.session() as s:
        user = s.get(User, uid)
        assert user is not None
        user.disabled = True
    r = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_authorization_code_with_pkce_through_the_login_form(oidc: Oidc) -> None:
    uid = oidc.add_user("frank", email="frank@example.org")
    code = oidc.authorize_code("frank", verifier=VERIFIER, nonce="nonce-123")
    r = oidc.token(
        grant_type="authorization_code",
        client_id=CLI,
        code=code,
        redirect_uri=LOOPBACK,
        code_verifier=VERIFIER,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    idt = verify(oidc, body["id_token"], "JWT")
    assert idt["nonce"] == "nonce-123" and idt["sub"] == uid and idt["aud"] == CLI
    assert idt["email"] == "frank@example.org" and "at_hash" in idt
    info = oidc.client.get(oidc.url("/userinfo"), headers=bearer(body["access_token"]))
    assert info.status_code == 200
    assert info.json() == {
        "sub": uid,
        "name": "Frank Example",
        "preferred_username": "frank",
        "email": "frank@example.org",
    }
    post = oidc.client.post(oidc.url("/userinfo"), headers=bearer(body["access_token"]))
    assert post.status_code == 200 and post.json()["sub"] == uid
    refreshed = oidc.token(
        grant_type="refresh_token", client_id=CLI, refresh_token=body["refresh_token"]
    )
    assert refreshed.status_code == 200


def test_confidential_client_code_flow_with_registered_redirect(oidc: Oidc) -> None:
    oidc.add_user("gina")
    redirect = "https://app.example.org/cb"
    cid, secret = oidc.add_client(
        "webapp", grant_types=("authorization_code",), redirect_uris=(redirect,)
    )
    code = oidc.authorize_code("gina", verifier=VERIFIER, client_id=cid, redirect_uri=redirect)
    r = oidc.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect,
        code_verifier=VERIFIER,
        auth=(cid, secret),
    )
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()  # the client has no refresh_token grant


def test_login_form_is_plain_html_escaped_and_protected(oidc: Oidc) -> None:
    state = '"><script>alert(1)</script>'
    page = oidc.client.get(
        oidc.url("/authorize"),
        params={
            "response_type": "code",
            "client_id": CLI,
            "redirect_uri": LOOPBACK,
            "state": state,
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "&lt;script&gt;" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
    assert hidden_fields(page.text)["state"] == state


def test_cancel_redirects_with_access_denied(oidc: Oidc) -> None:
    page = oidc.client.get(
        oidc.url("/authorize"),
        params={
            "response_type": "code",
            "client_id": CLI,
            "redirect_uri": LOOPBACK,
            "state": "s1",
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
        },
    )
    r = oidc.client.post(
        oidc.url("/authorize"),
        data={**hidden_fields(page.text), "cancel": "1"},
        follow_redirects=False,
    )
    assert r.status_code == 302
    assert r.headers["location"].startswith(LOOPBACK + "?error=access_denied")
    assert "state=s1" in r.headers["location"]


def test_wrong_password_on_the_form_shows_it_again_without_a_code(oidc: Oidc) -> None:
    oidc.add_user("hank")
    page = oidc.client.get(
        oidc.url("/authorize"),
        params={
            "response_type": "code",
            "client_id": CLI,
            "redirect_uri": LOOPBACK,
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
        },
    )
    r = oidc.client.post(
        oidc.url("/authorize"),
        data={**hidden_fields(page.text), "username": "hank", "password": "nope"},
        follow_redirects=False,
    )
    assert r.status_code == 400 and "location" not in r.headers
    assert "incorrect" in r.text and 'name="password"' in r.text


def test_introspection_by_a_confidential_client(oidc: Oidc) -> None:
    oidc.add_user("ivy")
    rs, rs_secret = oidc.add_client("resource-server")
    tokens = oidc.password_login("ivy", scope="openid").json()
    r = oidc.client.post(
        oidc.url("/introspect"), data={"token": tokens["access_token"]}, auth=(rs, rs_secret)
    )
    assert r.status_code == 200
    body = r.json()
    assert body["active"] is True and body["client_id"] == CLI and body["scope"] == "openid"
    assert body["username"] == "ivy" and body["iss"] == oidc.url("")
    rt = oidc.client.post(
        oidc.url("/introspect"), data={"token": tokens["refresh_token"]}, auth=(rs, rs_secret)
    ).json()
    assert rt["active"] is True and rt["token_type"] == "refresh_token"
    for junk in ("garbage", "a.b.c", tokens["access_token"] + "x"):
        r = oidc.client.post(oidc.url("/introspect"), data={"token": junk}, auth=(rs, rs_secret))
        assert r.status_code == 200 and r.json() == {"active": False}
    # Only confidential clients may introspect.
    anon = oidc.client.post(
        oidc.url("/introspect"), data={"token": tokens["access_token"], "client_id": CLI}
    )
    assert anon.status_code in (400, 401) and anon.json()["error"] == "invalid_client"
    # Expired: inactive.
    oidc.advance(400)
    late = oidc.client.post(
        oidc.url("/introspect"), data={"token": tokens["access_token"]}, auth=(rs, rs_secret)
    )
    assert late.json() == {"active": False}


def test_revoked_access_token_is_refused_by_the_api_at_once(oidc: Oidc) -> None:
    oidc.add_user("jack")
    tokens = oidc.password_login("jack").json()
    at = tokens["access_token"]
    assert oidc.client.get("/v1/whoami", headers=bearer(at)).status_code == 200
    r = oidc.client.post(oidc.url("/revoke"), data={"token": at, "client_id": CLI})
    assert r.status_code == 200
    assert oidc.client.get("/v1/whoami", headers=bearer(at)).status_code == 401
    rs, rs_secret = oidc.add_client("rs")
    intro = oidc.client.post(oidc.url("/introspect"), data={"token": at}, auth=(rs, rs_secret))
    assert intro.json() == {"active": False}
    # Revoking a refresh token ends its family.
    r = oidc.client.post(
        oidc.url("/revoke"), data={"token": tokens["refresh_token"], "client_id": CLI}
    )
    assert r.status_code == 200
    again = oidc.token(
        grant_type="refresh_token", client_id=CLI, refresh_token=tokens["refresh_token"]
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert ("revoke", "success") in audit_actions(oidc)
    # Unknown tokens are "revoked" too (RFC 7009 section 2.2).
    assert (
        oidc.client.post(oidc.url("/revoke"), data={"token": "zzz", "client_id": CLI}).status_code
        == 200
    )


def test_another_client_cannot_revoke_my_token(oidc: Oidc) -> None:
    oidc.add_user("kate")
    at = oidc.password_login("kate").json()["access_token"]
    cid, secret = oidc.add_client("other")
    r = oidc.client.post(oidc.url("/revoke"), data={"token": at}, auth=(cid, secret))
    assert r.status_code == 400
    assert oidc.client.get("/v1/whoami", headers=bearer(at)).status_code == 200


def test_logout_revokes_the_refresh_family_and_redirects_only_when_registered(oidc: Oidc) -> None:
    oidc.add_user("liam")
    redirect = "https://app.example.org/bye"
    cid, secret = oidc.add_client(
        "portal", grant_types=("password", "refresh_token"), redirect_uris=(redirect,)
    )
    tokens = oidc.token(
        grant_type="password",
        username="liam",
        password=PASSWORD,
        scope="openid",
        auth=(cid, secret),
    ).json()
    evil = oidc.client.get(
        oidc.url("/logout"),
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert evil.status_code == 200 and "location" not in evil.headers
    r = oidc.client.get(
        oidc.url("/logout"),
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": redirect,
            "state": "st",
        },
        follow_redirects=False,
    )
    assert r.status_code == 302 and r.headers["location"] == redirect + "?state=st"
    again = oidc.token(
        grant_type="refresh_token", refresh_token=tokens["refresh_token"], auth=(cid, secret)
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    bad = oidc.client.get(oidc.url("/logout"), params={"id_token_hint": "x.y.z"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_successful_login_rehashes_a_stale_hash(oidc: Oidc) -> None:
    uid = oidc.add_user("mona")
    import argon2

    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with oidc.plat.svc.db.session() as s:
        user = s.get(User, uid)
        assert user is not None
        user.password_hash = weak
    assert needs_rehash(weak)
    assert oidc.password_login("mona").status_code == 200
    with oidc.plat.svc.db.reader() as s:
        stored = s.scalar(select(User.password_hash).where(User.id == uid))
    assert stored and stored != weak and not needs_rehash(stored)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
