"""The OIDC provider of a real server process, driven by independent client libraries.

`cellplane.testing.harness.Deployment` starts only the server (`python -m cellplane.daemon
server`; no agent is needed). Users and clients are written into its SQLite database between
`prepare()` (migrate and seed) and the server start. The flows run through authlib's *client*
(`authlib.integrations.httpx_client.OAuth2Client`, the client half of authlib, which shares no
code path with our server side), the login form is driven with plain httpx, and every access
and ID token is verified with PyJWT from the published JWKS alone (`jwt.PyJWKClient`), with the
issuer taken from the discovery document.
"""

from __future__ import annotations

import html
import re
import secrets
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from cellplane.identity.passwords import generate_secret, hash_password, hash_secret
from cellplane.ids import new_id, utcnow
from cellplane.settings import ServerSettings
from cellplane.state.db import Database
from cellplane.state.identity_models import OAuthClient, RoleAssignment, User
from cellplane.state.models import Tenant
from cellplane.testing.harness import Deployment

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # authlib: "use httpx2"
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

pytestmark = pytest.mark.integration

PASSWORD = "integration-pass-phrase"
CLI = "cellplane-cli"
REDIRECT = "http://127.0.0.1:47011/callback"


class Server:
    def __init__(self, d: Deployment, secret: str, user_id: str) -> None:
        self.d = d
        self.service_secret = secret
        self.user_id = user_id
        self.config: dict[str, Any] = httpx.get(
            f"{d.url}/identity/default/.well-known/openid-configuration", timeout=10
        ).json()
        self.jwks = jwt.PyJWKClient(self.config["jwks_uri"])

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """PyJWT with nothing but the JWKS: signature, alg, exp/nbf/iat, iss, aud."""
        key = self.jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=self.config["id_token_signing_alg_values_supported"],
            audience=audience,
            issuer=self.config["issuer"],
            options={"require": ["exp", "iat", "iss", "sub", "aud"]},
        )
        return claims

    def whoami(self, access_token: str) -> httpx.Response:
        return httpx.get(
            f"{self.d.url}/v1/whoami",
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=10,
        )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    d = Deployment()
    try:
        d.prepare()
        db = Database(ServerSettings(data_dir=d.data_dir).resolved_database_url())
        secret = generate_secret()
        with db.session() as s:
            tid = s.scalar(select(Tenant.id).where(Tenant.name == "default"))
            assert tid is not None
            user = User(
                id=new_id("usr"),
                tenant_id=tid,
                name="alice",
                email="alice@example.org",
                display_name="Alice Integration",
                password_hash=hash_password(PASSWORD),
                source="local",
                disabled=False,
                failed_logins=0,
                created_at=utcnow(),
            )
            s.add(user)
            s.add(
                OAuthClient(
                    id="cli-integration",
                    tenant_id=tid,
                    name="integration service",
                    secret_hash=hash_secret(secret),
                    redirect_uris=[],
                    grant_types=["client_credentials"],
                    created_at=utcnow(),
                )
            )
            for kind, subject, role in (
                ("user", user.id, "tenant-admin"),
                ("client", "cli-integration", "project-viewer"),
            ):
                s.add(
                    RoleAssignment(
                        id=new_id("rol"),
                        scope="tenant",
                        tenant_id=tid,
                        project_id=None,
                        subject_kind=kind,
                        subject_id=subject,
                        role=role,
                        created_at=utcnow(),
                    )
                )
            user_id = user.id
        db.dispose()
        d.start_server()
        yield Server(d, secret, user_id)
    finally:
        d.close()


def test_discovery_names_this_issuer(server: Server) -> None:
    cfg = server.config
    assert cfg["issuer"] == f"{server.d.url}/identity/default"
    assert cfg["code_challenge_methods_supported"] == ["S256"]
    assert cfg["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = httpx.get(cfg["jwks_uri"], timeout=10).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and "d" not in k for k in keys)


def test_password_grant_and_refresh(server: Server) -> None:
    cfg = server.config
    with OAuth2Client(
        client_id=CLI, token_endpoint_auth_method="none", scope="openid profile email"
    ) as client:
        token = client.fetch_token(
            cfg["token_endpoint"], grant_type="password", username="alice", password=PASSWORD
        )
        access = server.verify(token["access_token"], "cellplane")
        assert access["sub"] == server.user_id and access["client_id"] == CLI
        assert "tenant-admin" in access["roles"]
        idt = server.verify(token["id_token"], CLI)
        assert idt["sub"] == server.user_id and idt["email"] == "alice@example.org"
        assert server.whoami(token["access_token"]).json()["subject"] == server.user_id

        refreshed = client.refresh_token(
            cfg["token_endpoint"], refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        again = server.verify(refreshed["access_token"], "cellplane")
        assert again["sub"] == server.user_id and again["jti"] != access["jti"]
        server.verify(refreshed["id_token"], CLI)

        # The old refresh token is spent: using it again is refused and ends the family.
        with pytest.raises(OAuthError, match="invalid_grant"):
            client.refresh_token(cfg["token_endpoint"], refresh_token=token["refresh_token"])
        with pytest.raises(OAuthError, match="invalid_grant"):
            client.refresh_token(cfg["token_endpoint"], refresh_token=refreshed["refresh_token"])


def test_wrong_password_is_refused(server: Server) -> None:
    with (
        OAuth2Client(client_id=CLI, token_endpoint_auth_method="none") as client,
        pytest.raises(OAuthError, match="invalid_grant"),
    ):
        client.fetch_token(
            server.config["token_endpoint"],
            grant_type="password",
            username="alice",
            password="not-the-password",
        )


def test_client_credentials_and_revocation(server: Server) -> None:
    cfg = server.config
    with OAuth2Client(
        client_id="cli-integration",
        client_secret=server.service_secret,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
    ) as client:
        token = client.fetch_token(cfg["token_endpoint"], grant_type="client_credentials")
        claims = server.verify(token["access_token"], "cellplane")
        assert claims["sub"] == "cli-integration" and claims["kind"] == "service"
        assert claims["roles"] == ["project-viewer"]
        who = server.whoami(token["access_token"])
        assert who.status_code == 200 and who.json()["kind"] == "service"
        r = client.revoke_token(cfg["revocation_endpoint"], token=token["access_token"])
        assert r.status_code == 200
        assert server.whoami(token["access_token"]).status_code == 401


def _hidden_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(m.group(1)): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    }


def test_authorization_code_with_pkce_through_the_login_form(server: Server) -> None:
    cfg = server.config
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    with OAuth2Client(
        client_id=CLI,
        token_endpoint_auth_method="none",
        redirect_uri=REDIRECT,
        scope="openid profile",
        code_challenge_method="S256",
    ) as client:
        url, state = client.create_authorization_url(
            cfg["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        with httpx.Client(timeout=10, follow_redirects=False) as browser:
            page = browser.get(url)
            assert page.status_code == 200 and "<form" in page.text
            action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text)[1])  # type: ignore[index]
            assert action == cfg["authorization_endpoint"]
            form = {**_hidden_fields(page.text), "username": "alice", "password": PASSWORD}
            redirect = browser.post(action, data=form)
        assert redirect.status_code == 302, redirect.text
        location = redirect.headers["location"]
        assert location.startswith(REDIRECT + "?")
        token = client.fetch_token(
            cfg["token_endpoint"],
            authorization_response=location,
            state=state,
            code_verifier=verifier,
        )
    access = server.verify(token["access_token"], "cellplane")
    assert access["sub"] == server.user_id and access["scope"] == "openid profile"
    idt = server.verify(token["id_token"], CLI)
    assert idt["nonce"] == nonce and idt["preferred_username"] == "alice"
    assert "auth_time" in idt and "email" not in idt
    assert server.whoami(token["access_token"]).status_code == 200
    info = httpx.get(
        cfg["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=10,
    )
    assert info.status_code == 200 and info.json()["sub"] == server.user_id
