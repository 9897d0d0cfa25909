"""Discovery, JWKS and per-tenant issuers."""

from __future__ import annotations

import json
from base64 import urlsafe_b64decode

from authlib.oidc.discovery import OpenIDProviderMetadata
from oidc_support import BASE, Oidc

from cellplane.api.routes_identity import PUBLIC_ROUTES, router
from cellplane.state.identity_models import AuditEvent, RefreshToken


def _header(token: str) -> dict[str, str]:
    part = token.split(".")[0]
    data: dict[str, str] = json.loads(urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def test_discovery_document_is_valid_and_names_every_endpoint(oidc: Oidc) -> None:
    r = oidc.client.get(oidc.url("/.well-known/openid-configuration"))
    assert r.status_code == 200
    doc = r.json()
    iss = f"{BASE}/identity/default"
    assert doc["issuer"] == iss
    # authlib's own validators of OpenID Provider Metadata (an independent check of the shape).
    meta = OpenIDProviderMetadata(doc)
    for key in meta.REGISTRY_KEYS:
        getattr(meta, f"validate_{key}")()
    for key, path in {
        "authorization_endpoint": "/authorize",
        "token_endpoint": "/token",
        "userinfo_endpoint": "/userinfo",
        "jwks_uri": "/jwks",
        "revocation_endpoint": "/revoke",
        "introspection_endpoint": "/introspect",
        "end_session_endpoint": "/logout",
    }.items():
        assert doc[key] == iss + path
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["grant_types_supported"]) == {
        "authorization_code",
        "password",
        "client_credentials",
        "refresh_token",
    }
    assert "openid" in doc["scopes_supported"]
    assert doc["subject_types_supported"] == ["public"]
    assert "client_secret_basic" in doc["token_endpoint_auth_methods_supported"]


def test_jwks_publishes_the_key_that_signs_tokens(oidc: Oidc) -> None:
    oidc.add_user("jwks-user")
    keys = oidc.client.get(oidc.url("/jwks"))
    assert keys.status_code == 200
    assert keys.headers["content-type"].startswith("application/jwk-set+json")
    jwks = keys.json()
    assert all("d" not in k for k in jwks["keys"]), "a private key part leaked"
    kids = {k["kid"] for k in jwks["keys"]}
    token = oidc.password_login("jwks-user").json()["access_token"]
    header = _header(token)
    assert header["kid"] in kids and header["alg"] == "RS256" and header["typ"] == "at+jwt"


def test_each_tenant_is_its_own_issuer_with_its_own_keys(oidc: Oidc) -> None:
    oidc.add_tenant("beta")
    a = oidc.client.get(oidc.url("/.well-known/openid-configuration")).json()
    b = oidc.client.get(oidc.url("/.well-known/openid-configuration", "beta")).json()
    assert a["issuer"] != b["issuer"] and b["issuer"].endswith("/identity/beta")
    ka = {k["kid"] for k in oidc.client.get(oidc.url("/jwks")).json()["keys"]}
    kb = {k["kid"] for k in oidc.client.get(oidc.url("/jwks", "beta")).json()["keys"]}
    assert ka and kb and not ka & kb


def test_unknown_tenant_answers_404_and_changes_nothing(oidc: Oidc) -> None:
    before = (oidc.count(AuditEvent), oidc.count(RefreshToken))
    for method, path in [
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/jwks"),
        ("POST", "/token"),
        ("GET", "/authorize"),
        ("POST", "/introspect"),
    ]:
        data = (
            {"grant_type": "password", "client_id": "cellplane-cli"} if method == "POST" else None
        )
        r = oidc.client.request(method, oidc.url(path, "nope"), data=data)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (oidc.count(AuditEvent), oidc.count(RefreshToken)) == before
    assert not (oidc.plat.svc.data_dir / "identity" / "keys" / "nope").exists()


def test_every_identity_route_is_listed_as_public() -> None:
    paths = {getattr(r, "path", "") for r in router.routes}
    assert paths == PUBLIC_ROUTES
