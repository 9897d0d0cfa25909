"""Sign-in and sign-out of the portal against the real issuer of the in-process server: the
authorization code + PKCE flow, the session cookie, the CSRF check and logout at the issuer."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from cellplane_platform_support import Platform
from portal_support import BASE, add_user, csrf_of, mount, sign_in
from sqlalchemy import select

from cellplane.state.identity_models import RefreshToken


def test_sign_in_lands_on_the_dashboard_with_a_session_cookie(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "dora", "project-member")
    page = sign_in(client, "dora")
    assert "Project default" in page and "Quota usage" in page and "Recent tasks" in page
    cookie = client.cookies.jar
    (portal_cookie,) = [c for c in cookie if c.name == "cp_portal"]
    assert portal_cookie.secure and portal_cookie.path == "/portal"
    assert portal_cookie.has_nonstandard_attr("HttpOnly")


def test_the_authorization_request_uses_pkce_s256_and_the_portal_client(plat: Platform) -> None:
    client = mount(plat)
    r = client.get("/portal/login?tenant=default")
    assert r.status_code == 303
    url = urlsplit(r.headers["location"])
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert url.path == "/identity/default/authorize"
    assert q["client_id"] == "cellplane-portal"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["redirect_uri"] == f"{BASE}/portal/callback"


def test_a_callback_with_another_state_is_refused(plat: Platform) -> None:
    client = mount(plat)
    client.get("/portal/login?tenant=default")
    r = client.get("/portal/callback?code=x&state=not-the-one")
    assert r.status_code == 400 and "expired" in r.text
    assert client.get("/portal/").status_code == 303  # still signed out


def test_pages_need_a_session(plat: Platform) -> None:
    client = mount(plat)
    r = client.get("/portal/projects/default/cells")
    assert r.status_code == 303
    assert r.headers["location"] == "/portal/login?next=%2Fportal%2Fprojects%2Fdefault%2Fcells"


def test_next_never_leaves_the_portal(plat: Platform) -> None:
    client = mount(plat)
    r = client.get("/portal/login?tenant=default&next=https://evil.example/")
    assert r.status_code == 303  # the flow starts; the pending next is the portal's home
    r = client.get("/portal/login?next=//evil.example/x")
    assert 'name="next" value="/portal/"' in r.text


def test_a_form_without_the_csrf_token_changes_nothing(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "olga", "system-admin")
    sign_in(client, "olga")
    r = client.post("/portal/projects/default/quota", data={"cells": "3"})
    assert r.status_code == 403 and "expired or did not come from this page" in r.text
    r = client.post("/portal/projects/default/quota", data={"cells": "3", "csrf": "forged"})
    assert r.status_code == 403
    quota = plat.client.get("/v1/projects/default/quota", headers=plat.admin).json()
    assert quota["limits"]["cells"] is None


def test_logout_ends_the_portal_session_and_the_issuer_session(plat: Platform) -> None:
    client = mount(plat)
    add_user(plat, "lena", "project-member")
    page = sign_in(client, "lena")
    r = client.post("/portal/logout", data={"csrf": csrf_of(page)})
    assert r.status_code == 303
    end = urlsplit(r.headers["location"])
    assert end.path == "/identity/default/logout"
    r = client.get(r.headers["location"])  # the issuer revokes the portal's refresh tokens
    assert r.status_code in (302, 303) and r.headers["location"].startswith(
        f"{BASE}/portal/signed-out"
    )
    with plat.svc.db.reader() as s:
        revoked: list[Any] = [
            t.revoked_at
            for t in s.scalars(
                select(RefreshToken).where(RefreshToken.client_id == "cellplane-portal")
            )
        ]
    assert revoked and all(at is not None for at in revoked)
    assert client.get("/portal/").status_code == 303  # signed out of the portal


def _portal_state(plat: Platform) -> Any:
    (mounted,) = [r for r in plat.client.app.routes if getattr(r, "path", "") == "/portal"]
    return mounted.app.state.portal


def test_an_expiring_access_token_is_refreshed_once_for_concurrent_requests(
    plat: Platform,
) -> None:
    import asyncio

    import httpx

    client = mount(plat)
    add_user(plat, "rita", "project-member")
    sign_in(client, "rita")
    store = _portal_state(plat).store
    sid = client.cookies["cp_portal"]
    session = store.get(sid)
    assert session is not None and session.signed_in
    first_refresh = session.refresh_token
    session.expires_at = 0.0  # expired: the next requests must refresh
    store.save(session)

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=plat.client.app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE, cookies={"cp_portal": sid}
        ) as ac:
            rs = await asyncio.gather(*(ac.get("/portal/projects/default/") for _ in range(4)))
            return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200, 200, 200, 200]
    session = store.get(sid)
    assert session is not None
    assert session.refresh_token != first_refresh and session.expires_at > 0
    # One refresh, not four: the family is intact, so refreshing again still works.
    session.expires_at = 0.0
    store.save(session)
    assert client.get("/portal/projects/default/").status_code == 200
    with plat.svc.db.reader() as s:
        revoked = [
            t.revoked_at
            for t in s.scalars(
                select(RefreshToken).where(RefreshToken.client_id == "cellplane-portal")
            )
        ]
    assert revoked and all(at is None for at in revoked)  # no reuse was seen: nothing revoked
