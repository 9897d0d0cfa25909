"""The portal's server-side session store: expiry, rotation at sign-in, the size bound."""

from __future__ import annotations

import subprocess
import sys

from cellplane.portal.oauth import pkce_pair
from cellplane.portal.session import SessionStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_pending_session_expires_and_a_signed_in_one_idles_out() -> None:
    clock = Clock()
    store = SessionStore(idle_s=100, max_age_s=1000, pending_s=10, clock=clock)
    pending = store.new()
    clock.t += 11
    assert store.get(pending.id) is None
    s = store.new()
    s.access_token = "t"
    clock.t += 99
    assert store.get(s.id) is s  # each request keeps it alive
    clock.t += 99
    assert store.get(s.id) is s
    clock.t += 101
    assert store.get(s.id) is None


def test_a_session_lives_at_most_max_age_however_busy() -> None:
    clock = Clock()
    store = SessionStore(idle_s=100, max_age_s=250, clock=clock)
    s = store.new()
    s.access_token = "t"
    for _ in range(2):
        clock.t += 90
        assert store.get(s.id) is s
    clock.t += 90
    assert store.get(s.id) is None


def test_rotation_gives_a_new_id_and_csrf_token_and_forgets_the_old_id() -> None:
    store = SessionStore()
    s = store.new()
    old_id, old_csrf = s.id, s.csrf
    store.rotate(s)
    assert s.id != old_id and s.csrf != old_csrf
    assert store.get(old_id) is None and store.get(s.id) is s
    assert s.csrf_ok(s.csrf) and not s.csrf_ok(old_csrf) and not s.csrf_ok(None)


def test_the_least_recently_used_session_goes_first_past_the_bound() -> None:
    store = SessionStore(max_sessions=2)
    a, b = store.new(), store.new()
    assert store.get(a.id) is a  # a is now the most recently used
    store.new()
    assert store.get(b.id) is None and store.get(a.id) is a and len(store) == 2


def test_sessions_made_by_loading_the_login_page_never_push_out_signed_in_ones() -> None:
    store = SessionStore(max_sessions=3)
    signed = store.new()
    signed.access_token = "t"
    for _ in range(50):
        store.new()
    assert store.get(signed.id) is signed and len(store) == 3


def test_pkce_challenge_is_the_s256_of_the_verifier() -> None:
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_the_portal_is_built_on_its_first_request_not_at_install() -> None:
    """A server nobody browses does not carry the portal's modules (~12 MB resident): `install`
    mounts a placeholder; the pages (and Jinja2) load when /portal is first asked for."""
    code = (
        "import sys\n"
        "from starlette.applications import Starlette\n"
        "from cellplane import portal\n"
        "app = Starlette()\n"
        "portal.install(app)\n"
        "heavy = [m for m in ('cellplane.portal.app', 'cellplane.portal.pages', 'jinja2') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out
