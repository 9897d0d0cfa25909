"""Attacks on the provider and on the tokens it issues; every one must be refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_support import BASE, CLI, LOOPBACK, PASSWORD, Oidc, hidden_fields, payload, s256
from sqlalchemy import select

from cellplane.ids import new_id, utcnow
from cellplane.state.identity_models import AuditEvent, RefreshToken
from cellplane.state.models import Project

VERIFIER = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Forger:
    """Signs arbitrary tokens with the tenant's real private key (or a wrong one)."""

    def __init__(self, oidc: Oidc, tenant: str = "default") -> None:
        self.oidc = oidc
        ring = oidc.plat.svc.tokens.ring(oidc.tenant_id(tenant), time.time())
        self.key = ring.active_key(time.time())
        self.private = ring.private_jwk(self.key.kid)

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        head = {"alg": "RS256", "kid": self.key.kid, "typ": "at+jwt", **header}
        return jwt.encode(head, claims, self.private, algorithms=["RS256"])


@pytest.fixture
def victim(oidc: Oidc) -> dict[str, Any]:
    """A real token of a user of tenant `default`, and its claims, to tamper with."""
    oidc.add_user("victim")
    token = oidc.password_login("victim", scope="openid profile").json()["access_token"]
    return {"token": token, "claims": payload(token)}


def refused_everywhere(oidc: Oidc, token: str) -> None:
    assert oidc.client.get("/v1/whoami", headers=bearer(token)).status_code == 401
    r = oidc.client.get(oidc.url("/userinfo"), headers=bearer(token))
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_the_unmodified_token_is_accepted(oidc: Oidc, victim: dict[str, Any]) -> None:
    # The control for every forgery below: the same path accepts the genuine token.
    assert oidc.client.get("/v1/whoami", headers=bearer(victim["token"])).status_code == 200
    assert (
        oidc.client.get(oidc.url("/userinfo"), headers=bearer(victim["token"])).status_code == 200
    )
    forged = Forger(oidc).sign(victim["claims"])
    assert oidc.client.get(oidc.url("/userinfo"), headers=bearer(forged)).status_code == 200


def test_alg_none_is_refused(oidc: Oidc, victim: dict[str, Any]) -> None:
    kid = Forger(oidc).key.kid
    head = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    body = b64(json.dumps(victim["claims"]).encode())
    for token in (f"{head}.{body}.", f"{head}.{body}.{victim['token'].split('.')[2]}"):
        refused_everywhere(oidc, token)


def test_hs256_signed_with_the_public_key_is_refused(oidc: Oidc, victim: dict[str, Any]) -> None:
    jwks = oidc.client.get(oidc.url("/jwks")).json()
    public = RSAKey.import_key(jwks["keys"][0])
    pem = public.as_pem(private=False)
    raw = public.get_op_key("verify").public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    head = {"alg": "HS256", "typ": "at+jwt", "kid": jwks["keys"][0]["kid"]}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(victim['claims']).encode())}"
    for secret in (pem, raw, json.dumps(jwks["keys"][0]).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused_everywhere(oidc, f"{signing_input}.{b64(mac)}")


def test_unknown_kid_and_foreign_key_are_refused(oidc: Oidc, victim: dict[str, Any]) -> None:
    stranger = RSAKey.generate_key(2048)
    token = jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": "not-a-known-kid"},
        victim["claims"],
        stranger,
        algorithms=["RS256"],
    )
    refused_everywhere(oidc, token)
    # A known kid but another key's signature.
    kid = Forger(oidc).key.kid
    token = jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": kid},
        victim["claims"],
        stranger,
        algorithms=["RS256"],
    )
    refused_everywhere(oidc, token)
    # A jwk header naming the attacker's own key is ignored.
    token = jwt.encode(
        {"alg": "RS256", "typ": "at+jwt", "kid": kid, "jwk": stranger.as_dict(private=False)},
        victim["claims"],
        stranger,
        algorithms=["RS256"],
    )
    refused_everywhere(oidc, token)


@pytest.mark.parametrize(
    "change",
    [
        {"exp": -3600, "iat": -4000, "nbf": -4000},  # expired
        {"nbf": 3600},  # not yet valid
        {"iat": 3600, "nbf": 3600, "exp": 7200},  # issued in the future
    ],
    ids=["expired", "not-yet-valid", "future-iat"],
)
def test_time_claims_are_enforced(
    oidc: Oidc, victim: dict[str, Any], change: dict[str, int]
) -> None:
    now = int(time.time())
    claims = {**victim["claims"], **{k: now + v for k, v in change.items()}}
    refused_everywhere(oidc, Forger(oidc).sign(claims))


def test_expiry_is_enforced_with_the_clock_moved(oidc: Oidc, victim: dict[str, Any]) -> None:
    oidc.advance(300 + 31)  # lifetime plus leeway
    r = oidc.client.get(oidc.url("/userinfo"), headers=bearer(victim["token"]))
    assert r.status_code == 401


def test_wrong_audience_is_refused(oidc: Oidc, victim: dict[str, Any]) -> None:
    for aud in ("other-api", ["other-api"], CLI):
        refused_everywhere(oidc, Forger(oidc).sign({**victim["claims"], "aud": aud}))


def test_wrong_issuer_is_refused(oidc: Oidc, victim: dict[str, Any]) -> None:
    # With a configured public URL the API knows its issuers exactly.
    oidc.plat.svc.public_url = BASE
    for iss in ("https://evil.example/identity/default", f"{BASE}/identity/default/", "x"):
        refused_everywhere(oidc, Forger(oidc).sign({**victim["claims"], "iss": iss}))
    assert oidc.client.get("/v1/whoami", headers=bearer(victim["token"])).status_code == 200


def test_wrong_typ_is_refused(oidc: Oidc, victim: dict[str, Any]) -> None:
    # An ID token (typ JWT) is not an access token, even with the API's audience.
    refused_everywhere(oidc, Forger(oidc).sign(victim["claims"], typ="JWT"))


def test_a_token_of_tenant_a_is_useless_at_tenant_b(oidc: Oidc, victim: dict[str, Any]) -> None:
    beta = oidc.add_tenant("beta")
    oidc.add_user("bea", "beta")
    with oidc.plat.svc.db.session() as s:
        s.add(Project(id=new_id("prj"), tenant_id=beta, name="beta-only", created_at=utcnow()))
    b_tokens = oidc.password_login("bea", tenant="beta", scope="openid").json()
    a_token = victim["token"]
    # userinfo and introspection of tenant B.
    r = oidc.client.get(oidc.url("/userinfo", "beta"), headers=bearer(a_token))
    assert r.status_code == 401
    assert (
        oidc.client.get(
            oidc.url("/userinfo", "beta"), headers=bearer(b_tokens["access_token"])
        ).status_code
        == 200
    )
    rs, secret = oidc.add_client("rs-b", "beta")
    intro = oidc.client.post(
        oidc.url("/introspect", "beta"), data={"token": a_token}, auth=(rs, secret)
    )
    assert intro.status_code == 200 and intro.json() == {"active": False}
    own = oidc.client.post(
        oidc.url("/introspect", "beta"), data={"token": b_tokens["access_token"]}, auth=(rs, secret)
    )
    assert own.json()["active"] is True
    # A client of tenant A cannot introspect at tenant B at all.
    rs_a, secret_a = oidc.add_client("rs-a")
    r = oidc.client.post(
        oidc.url("/introspect", "beta"), data={"token": a_token}, auth=(rs_a, secret_a)
    )
    assert r.status_code == 401
    # Tenant A's refresh token at tenant B.
    a_refresh = oidc.password_login("victim").json()["refresh_token"]
    r = oidc.token("beta", grant_type="refresh_token", client_id=CLI, refresh_token=a_refresh)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # The API: B's project does not exist for A's caller, and does for B's.
    assert (
        oidc.client.get("/v1/projects/beta-only/cells", headers=bearer(a_token)).status_code == 404
    )
    ok = oidc.client.get("/v1/projects/beta-only/cells", headers=bearer(b_tokens["access_token"]))
    assert ok.status_code == 200
    # Tenant A's key cannot mint tokens claiming tenant B.
    forged = Forger(oidc).sign({**victim["claims"], "tid": beta, "tenant": "beta"})
    refused_everywhere(oidc, forged)
    # Nor can A's key sign for B's issuer.
    forged = Forger(oidc).sign({**victim["claims"], "iss": f"{BASE}/identity/beta", "tid": beta})
    assert oidc.client.get("/v1/whoami", headers=bearer(forged)).status_code == 401


def _code_params(**overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLI,
        "redirect_uri": LOOPBACK,
        "state": "st",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v != "<omit>"}


def _redeem(oidc: Oidc, code: str, **overrides: str) -> Any:
    form = {
        "grant_type": "authorization_code",
        "client_id": CLI,
        "code": code,
        "redirect_uri": LOOPBACK,
        "code_verifier": VERIFIER,
    }
    form.update(overrides)
    return oidc.token(**{k: v for k, v in form.items() if v != "<omit>"})


def test_replayed_code_is_refused_and_revokes_its_family(oidc: Oidc) -> None:
    oidc.add_user("rita")
    code = oidc.authorize_code("rita", verifier=VERIFIER)
    first = _redeem(oidc, code)
    assert first.status_code == 200
    tokens = first.json()
    access = bearer(tokens["access_token"])
    assert oidc.client.get("/v1/whoami", headers=access).status_code == 200
    again = _redeem(oidc, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The access token the code bought is revoked with the family, not left to expire.
    assert oidc.client.get("/v1/whoami", headers=access).status_code == 401
    r = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with oidc.plat.svc.db.reader() as s:
        revoked = list(s.scalars(select(RefreshToken.revoked_at)))
        reuse = s.scalar(select(AuditEvent.detail).where(AuditEvent.action == "token.reuse"))
    assert revoked and all(r is not None for r in revoked)
    assert reuse is not None and reuse["kind"] == "authorization_code"


def test_expired_code_is_refused(oidc: Oidc) -> None:
    oidc.add_user("sam")
    code = oidc.authorize_code("sam", verifier=VERIFIER)
    oidc.advance(61)
    r = _redeem(oidc, code)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_reused_refresh_token_revokes_the_whole_family(oidc: Oidc) -> None:
    oidc.add_user("tom")
    login = oidc.password_login("tom").json()
    rt1 = login["refresh_token"]
    second = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt1).json()
    rt2 = second["refresh_token"]
    live = [bearer(login["access_token"]), bearer(second["access_token"])]
    assert all(oidc.client.get("/v1/whoami", headers=h).status_code == 200 for h in live)
    # An attacker replays the stolen first token...
    reuse = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt1)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # ...and the newest token of the family, the legitimate client's, is dead too.
    newest = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt2)
    assert newest.status_code == 400 and newest.json()["error"] == "invalid_grant"
    # So are the access tokens the family had issued.
    assert all(oidc.client.get("/v1/whoami", headers=h).status_code == 401 for h in live)
    with oidc.plat.svc.db.reader() as s:
        events = list(s.scalars(select(AuditEvent.action).where(AuditEvent.outcome == "denied")))
    assert "token.reuse" in events
    # Another login starts a fresh family that works.
    rt3 = oidc.password_login("tom").json()["refresh_token"]
    assert (
        oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt3).status_code == 200
    )


def test_expired_refresh_token_is_refused(oidc: Oidc) -> None:
    oidc.add_user("uma")
    rt = oidc.password_login("uma").json()["refresh_token"]
    oidc.advance(30 * 86400 + 1)
    r = oidc.token(grant_type="refresh_token", client_id=CLI, refresh_token=rt)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge_method": "plain", "code_challenge": VERIFIER}, "invalid_request"),
        ({"code_challenge_method": "<omit>"}, "invalid_request"),
        ({"code_challenge": "<omit>", "code_challenge_method": "<omit>"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
    ],
    ids=["plain", "no-method", "no-pkce", "bad-challenge", "implicit", "unknown-scope"],
)
def test_bad_authorization_requests_redirect_with_an_error(
    oidc: Oidc, overrides: dict[str, str], error: str
) -> None:
    r = oidc.client.get(
        oidc.url("/authorize"), params=_code_params(**overrides), follow_redirects=False
    )
    assert r.status_code == 302, r.text
    loc = urlsplit(r.headers["location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == LOOPBACK
    q = parse_qs(loc.query)
    assert q["error"] == [error] and q["state"] == ["st"] and "code" not in q


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://evil.example/cb"},
        {"redirect_uri": "https://127.0.0.1/cb"},
        {"redirect_uri": "http://127.0.0.1:1234/cb#frag"},
        {"redirect_uri": "<omit>"},
        {"client_id": "no-such-client"},
        {"client_id": "<omit>"},
    ],
    ids=["foreign", "https-loopback", "fragment", "missing", "unknown-client", "no-client"],
)
def test_untrusted_redirects_get_an_error_page_not_a_redirect(
    oidc: Oidc, overrides: dict[str, str]
) -> None:
    r = oidc.client.get(
        oidc.url("/authorize"), params=_code_params(**overrides), follow_redirects=False
    )
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")


def test_registered_client_redirect_must_match_exactly(oidc: Oidc) -> None:
    cid, _ = oidc.add_client(
        "web", grant_types=("authorization_code",), redirect_uris=("https://app.example.org/cb",)
    )
    for uri in ("https://app.example.org/cb/", "https://app.example.org/cb?x=1", LOOPBACK):
        r = oidc.client.get(
            oidc.url("/authorize"),
            params=_code_params(client_id=cid, redirect_uri=uri),
            follow_redirects=False,
        )
        assert r.status_code == 400 and "location" not in r.headers


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_verifier": "<omit>"}, "invalid_request"),
        ({"code_verifier": "x" * 50}, "invalid_grant"),
        ({"code_verifier": "short"}, "invalid_request"),
        ({"redirect_uri": "http://127.0.0.1:43123/other"}, "invalid_grant"),
        ({"redirect_uri": "<omit>"}, "invalid_grant"),
    ],
    ids=["no-verifier", "wrong-verifier", "malformed-verifier", "other-redirect", "no-redirect"],
)
def test_code_redemption_checks_pkce_and_redirect(
    oidc: Oidc, overrides: dict[str, str], error: str
) -> None:
    oidc.add_user("vic")
    code = oidc.authorize_code("vic", verifier=VERIFIER)
    r = _redeem(oidc, code, **overrides)
    assert r.status_code == 400 and r.json()["error"] == error, r.text
    assert "access_token" not in r.json()


def test_code_of_another_client_is_refused(oidc: Oidc) -> None:
    oidc.add_user("walt")
    code = oidc.authorize_code("walt", verifier=VERIFIER)
    cid, secret = oidc.add_client(
        "thief", grant_types=("authorization_code",), redirect_uris=(LOOPBACK,)
    )
    r = oidc.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri=LOOPBACK,
        code_verifier=VERIFIER,
        auth=(cid, secret),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_login_form_post_needs_its_cookie_and_untampered_fields(oidc: Oidc) -> None:
    oidc.add_user("xena")
    page = oidc.client.get(oidc.url("/authorize"), params=_code_params())
    fields = {**hidden_fields(page.text), "username": "xena", "password": PASSWORD}
    # Tampered: another redirect URI than the one the form was made for.
    tampered = {**fields, "redirect_uri": "http://127.0.0.1:9/steal"}
    r = oidc.client.post(oidc.url("/authorize"), data=tampered, follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers
    # Cross-site: the browser does not send the SameSite cookie.
    oidc.client.cookies.clear()
    r = oidc.client.post(oidc.url("/authorize"), data=fields, follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers
    assert "expired" in r.text
    # Expired form.
    page = oidc.client.get(oidc.url("/authorize"), params=_code_params())
    fields = {**hidden_fields(page.text), "username": "xena", "password": PASSWORD}
    oidc.advance(3600)
    r = oidc.client.post(oidc.url("/authorize"), data=fields, follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers
    with oidc.plat.svc.db.reader() as s:
        assert s.scalar(select(AuditEvent.id).where(AuditEvent.action == "login")) is None
