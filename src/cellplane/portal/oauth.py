"""The portal as an OAuth client of a tenant's issuer: authorization code + PKCE (S256).

The browser goes to the issuer's own login page (`/identity/{tenant}/authorize`); the code comes
back to `/portal/callback` and is redeemed at the issuer's token endpoint. The portal speaks to
the token endpoint over HTTP, in process (an httpx client on the server's own ASGI app), so it
goes through the same endpoint, checks, rate limit and audit as any other client. Logout sends
the browser to the issuer's end-session endpoint with the ID token, which revokes the portal's
refresh tokens there.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.types import ASGIApp

from cellplane.identity.oidc.settings import PORTAL_CLIENT_ID

__all__ = ["PORTAL_CLIENT_ID", "IssuerClient", "TokenError", "Tokens", "pkce_pair"]

_SCOPE = "openid profile"


class TokenError(Exception):
    """The issuer refused a code or a refresh token (the text says why)."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    id_token: str
    expires_at: float


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) of RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class IssuerClient:
    """Talks to `/identity/{tenant}` of the server app `app`, whose public base URL is `base`."""

    def __init__(self, app: ASGIApp, base: str) -> None:
        self.base = base.rstrip("/")
        self._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=self.base,
            timeout=30,
        )

    def issuer(self, tenant: str) -> str:
        return f"{self.base}/identity/{tenant}"

    def redirect_uri(self) -> str:
        return f"{self.base}/portal/callback"

    def signed_out_uri(self) -> str:
        return f"{self.base}/portal/signed-out"

    def authorize_url(self, tenant: str, state: str, challenge: str, nonce: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": PORTAL_CLIENT_ID,
                "redirect_uri": self.redirect_uri(),
                "scope": _SCOPE,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.issuer(tenant)}/authorize?{query}"

    def end_session_url(self, tenant: str, id_token: str, state: str) -> str:
        query = urlencode(
            {
                "id_token_hint": id_token,
                "post_logout_redirect_uri": self.signed_out_uri(),
                "client_id": PORTAL_CLIENT_ID,
                "state": state,
            }
        )
        return f"{self.issuer(tenant)}/logout?{query}"

    async def _token(self, tenant: str, form: dict[str, str]) -> Tokens:
        path = f"/identity/{tenant}/token"
        resp = await self._http.post(path, data={**form, "client_id": PORTAL_CLIENT_ID})
        body: dict[str, Any] = {}
        try:
            parsed = resp.json()
            if isinstance(parsed, dict):
                body = parsed
        except ValueError:
            pass
        if resp.status_code != 200 or "access_token" not in body:
            reason = (
                body.get("error_description") or body.get("error") or f"HTTP {resp.status_code}"
            )
            raise TokenError(str(reason))
        return Tokens(
            access_token=str(body["access_token"]),
            refresh_token=str(body.get("refresh_token") or form.get("refresh_token") or ""),
            id_token=str(body.get("id_token") or ""),
            expires_at=time.time() + float(body.get("expires_in") or 300),
        )

    async def redeem(self, tenant: str, code: str, verifier: str) -> Tokens:
        return await self._token(
            tenant,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri(),
                "code_verifier": verifier,
            },
        )

    async def refresh(self, tenant: str, refresh_token: str) -> Tokens:
        return await self._token(
            tenant, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def aclose(self) -> None:
        await self._http.aclose()
