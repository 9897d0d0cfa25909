"""Helpers of the portal's in-process tests: the seeded server of `plat` over https, the portal
mounted on it, users made through the API, and a browser-like sign-in through the issuer's
real login form (imported by path as `portal_support`)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
from cellplane_platform_support import Platform

from cellplane.portal import install

BASE = "https://testserver"
PASSWORD = "portal-password-1"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def mount(plat: Platform) -> Any:
    """The platform's TestClient, as a browser at https://testserver, with the portal mounted."""
    install(plat.client.app)
    client = plat.client
    client.base_url = httpx.URL(BASE)
    client.follow_redirects = False
    return client


def add_user(plat: Platform, name: str, role: str, project: str | None = None) -> None:
    r = plat.client.post("/v1/users", json={"name": name, "password": PASSWORD}, headers=plat.admin)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = {"role": role, "user": name}
    if project:
        body["project"] = project
    r = plat.client.post("/v1/role-assignments", json=body, headers=plat.admin)
    assert r.status_code == 201, r.text


def hidden(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}


def csrf_of(page: str) -> str:
    return hidden(page)["csrf"]


def sign_in(client: Any, user: str, tenant: str = "default", password: str = PASSWORD) -> str:
    """Sign in through /portal/login and the issuer's form; the page the portal lands on."""
    r = client.get("/portal/login")
    assert r.status_code == 200, r.text
    r = client.post(
        "/portal/login", data={"csrf": csrf_of(r.text), "tenant": tenant, "next": "/portal/"}
    )
    assert r.status_code == 303, r.text
    authorize = r.headers["location"]
    assert authorize.startswith(f"{BASE}/identity/{tenant}/authorize?")
    r = client.get(authorize)
    assert r.status_code == 200, r.text
    action = html.unescape(re.search(r'action="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
    r = client.post(action, data={**hidden(r.text), "username": user, "password": password})
    assert r.status_code == 302, r.text
    callback = r.headers["location"]
    assert callback.startswith(f"{BASE}/portal/callback?code=")
    r = client.get(callback)
    assert r.status_code == 303, r.text
    r = client.get(r.headers["location"])
    while r.status_code == 303:
        r = client.get(r.headers["location"])
    assert r.status_code == 200, r.text
    return str(r.text)
