"""Shared helpers of the OIDC provider tests (imported by name: `oidc_support`).

Fixtures of the OIDC provider tests: an in-process server reached over https, users and
clients written straight into its database, and a movable clock.

The API's clients reach the server as https://testserver: authlib refuses plain http for the
token endpoint except on loopback addresses, as a deployment behind TLS would.
Passwords are hashed once per session at the real argon2id cost (about 50 ms each).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.oauth2.rfc6749 import OAuth2Error
from cellplane_platform_support import Platform
from sqlalchemy import func, select

from cellplane.identity.oidc import OidcProvider, SlowDown
from cellplane.identity.passwords import generate_secret, hash_password, hash_secret
from cellplane.ids import new_id, utcnow
from cellplane.state.identity_models import OAuthClient, RoleAssignment, User
from cellplane.state.models import Tenant

PASSWORD = "correct horse battery staple"
BASE = "https://testserver"
CLI = "cellplane-cli"
LOOPBACK = "http://127.0.0.1:43123/callback"


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    return hash_password(password)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Oidc:
    plat: Platform
    provider: OidcProvider
    offset: list[float] = field(default_factory=lambda: [0.0])

    @property
    def client(self) -> Any:
        return self.plat.client

    def advance(self, seconds: float) -> None:
        self.offset[0] += seconds

    def tenant_id(self, name: str = "default") -> str:
        with self.plat.svc.db.reader() as s:
            tid = s.scalar(select(Tenant.id).where(Tenant.name == name))
        assert tid is not None
        return tid

    def add_tenant(self, name: str) -> str:
        with self.plat.svc.db.session() as s:
            t = Tenant(id=new_id("tnt"), name=name, created_at=utcnow())
            s.add(t)
        return t.id

    def add_user(
        self,
        name: str,
        tenant: str = "default",
        *,
        password: str | None = PASSWORD,
        roles: tuple[str, ...] = ("tenant-admin",),
        email: str | None = None,
        disabled: bool = False,
    ) -> str:
        tid = self.tenant_id(tenant)
        with self.plat.svc.db.session() as s:
            u = User(
                id=new_id("usr"),
                tenant_id=tid,
                name=name,
                email=email,
                display_name=f"{name.title()} Example",
                password_hash=password_hash(password) if password else None,
                source="local",
                disabled=disabled,
                failed_logins=0,
                created_at=utcnow(),
            )
            s.add(u)
            for role in roles:
                s.add(
                    RoleAssignment(
                        id=new_id("rol"),
                        scope="tenant",
                        tenant_id=tid,
                        project_id=None,
                        subject_kind="user",
                        subject_id=u.id,
                        role=role,
                        created_at=utcnow(),
                    )
                )
        return u.id

    def add_client(
        self,
        name: str,
        tenant: str = "default",
        *,
        grant_types: tuple[str, ...] = ("client_credentials",),
        redirect_uris: tuple[str, ...] = (),
        public: bool = False,
        roles: tuple[str, ...] = (),
    ) -> tuple[str, str]:
        tid = self.tenant_id(tenant)
        secret = generate_secret()
        cid = new_id("cli")
        with self.plat.svc.db.session() as s:
            s.add(
                OAuthClient(
                    id=cid,
                    tenant_id=tid,
                    name=name,
                    secret_hash=None if public else hash_secret(secret),
                    redirect_uris=list(redirect_uris),
                    grant_types=list(grant_types),
                    created_at=utcnow(),
                )
            )
            for role in roles:
                s.add(
                    RoleAssignment(
                        id=new_id("rol"),
                        scope="tenant",
                        tenant_id=tid,
                        project_id=None,
                        subject_kind="client",
                        subject_id=cid,
                        role=role,
                        created_at=utcnow(),
                    )
                )
        return cid, secret

    def count(self, model: Any) -> int:
        with self.plat.svc.db.reader() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    # --- protocol ---

    def url(self, path: str, tenant: str = "default") -> str:
        return f"{BASE}/identity/{tenant}{path}"

    def token(
        self, tenant: str = "default", auth: tuple[str, str] | None = None, **form: str
    ) -> httpx.Response:
        r: httpx.Response = self.client.post(self.url("/token", tenant), data=form, auth=auth)
        return r

    def login_from(
        self, source: str, username: str, password: str = PASSWORD, tenant: str = "default"
    ) -> str:
        """A password check from client address ``source`` straight through the provider:
        "ok", "failed" (the one invalid_grant answer) or "slow" (429: that address is
        throttled)."""
        p = self.provider
        try:
            p.run(tenant, BASE, source, lambda ctx: p.check_password(ctx, username, password))
        except SlowDown:
            return "slow"
        except OAuth2Error:
            return "failed"
        return "ok"

    def password_login(
        self, username: str, password: str = PASSWORD, tenant: str = "default", **extra: str
    ) -> httpx.Response:
        return self.token(
            tenant,
            grant_type="password",
            client_id=CLI,
            username=username,
            password=password,
            **extra,
        )

    def authorize_code(
        self,
        username: str,
        *,
        verifier: str,
        client_id: str = CLI,
        redirect_uri: str = LOOPBACK,
        scope: str = "openid profile email",
        nonce: str = "n-0S6_WzA2Mj",
        tenant: str = "default",
        password: str = PASSWORD,
    ) -> str:
        """GET the login form, POST it, return the code from the redirect."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": "xyz-state",
            "nonce": nonce,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        page = self.client.get(self.url("/authorize", tenant), params=params)
        assert page.status_code == 200, page.text
        form = hidden_fields(page.text)
        r = self.client.post(
            self.url("/authorize", tenant),
            data={**form, "username": username, "password": password},
            follow_redirects=False,
        )
        assert r.status_code == 302, r.text
        loc = urlsplit(r.headers["location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == redirect_uri
        q = parse_qs(loc.query)
        assert q["state"] == ["xyz-state"]
        return q["code"][0]


def payload(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (for looking, never for trusting)."""
    part = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


def hidden_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(m.group(1)): html.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)
    }
