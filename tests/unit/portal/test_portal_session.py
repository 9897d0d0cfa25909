"""The portal's server-side session store, in the database: expiry, rotation at sign-in, the
size bound, the bounded sweep, nothing secret in clear."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cellplane_platform_support import Template, make_services
from sqlalchemy import select, update

from cellplane.portal.oauth import pkce_pair
from cellplane.portal.session import PortalSession, SessionStore
from cellplane.services.portal_sessions import PortalSessions, id_hash
from cellplane.state.identity_models import PortalSessionRecord


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rows(tmp_path: Path, template: Template) -> Iterator[PortalSessions]:
    svc = make_services(tmp_path, template)
    yield PortalSessions(svc.db, svc.sealer)
    svc.db.dispose()


def _signed_in(store: SessionStore) -> PortalSession:
    s = store.new()
    s.access_token, s.refresh_token = "access-t", "refresh-t"
    store.save(s)
    return s


def test_a_pending_session_expires_and_a_signed_in_one_idles_out(rows: PortalSessions) -> None:
    clock = Clock()
    store = SessionStore(rows, idle_s=100, max_age_s=1000, pending_s=10, clock=clock)
    pending = store.new()
    clock.t += 11
    assert store.get(pending.id) is None
    s = _signed_in(store)
    clock.t += 99
    assert _id(store.get(s.id)) == s.id  # each request keeps it alive
    clock.t += 99
    got = store.get(s.id)
    assert got is not None and got.access_token == "access-t" and got.csrf == s.csrf
    clock.t += 101
    assert store.get(s.id) is None
    assert len(store) == 0  # an expired session's row goes when it is asked for


def _id(s: PortalSession | None) -> str | None:
    return s.id if s is not None else None


def test_a_session_lives_at_most_max_age_however_busy(rows: PortalSessions) -> None:
    clock = Clock()
    store = SessionStore(rows, idle_s=100, max_age_s=250, clock=clock)
    s = _signed_in(store)
    for _ in range(2):
        clock.t += 90
        assert _id(store.get(s.id)) == s.id
    clock.t += 90
    assert store.get(s.id) is None


def test_rotation_gives_a_new_id_and_csrf_token_and_forgets_the_old_id(
    rows: PortalSessions,
) -> None:
    store = SessionStore(rows)
    s = store.new()
    old_id, old_csrf = s.id, s.csrf
    store.rotate(s)
    assert s.id != old_id and s.csrf != old_csrf
    assert store.get(old_id) is None and _id(store.get(s.id)) == s.id
    assert s.csrf_ok(s.csrf) and not s.csrf_ok(old_csrf) and not s.csrf_ok(None)


def test_the_least_recently_used_session_goes_first_past_the_bound(rows: PortalSessions) -> None:
    clock = Clock()
    store = SessionStore(rows, max_sessions=2, clock=clock)
    a, b = store.new(), store.new()
    clock.t += 61
    assert _id(store.get(a.id)) == a.id  # a is now the most recently used
    store.new()
    assert store.get(b.id) is None and _id(store.get(a.id)) == a.id and len(store) == 2


def test_sessions_made_by_loading_the_login_page_never_push_out_signed_in_ones(
    rows: PortalSessions,
) -> None:
    store = SessionStore(rows, max_sessions=3)
    signed = _signed_in(store)
    for _ in range(50):
        store.new()
    assert _id(store.get(signed.id)) == signed.id and len(store) == 3


def test_the_sweep_is_bounded_and_takes_only_expired_rows(rows: PortalSessions) -> None:
    clock = Clock()
    store = SessionStore(rows, pending_s=10, sweep_s=60, clock=clock)
    made = [store.new() for _ in range(5)]
    keep = _signed_in(store)
    clock.t += 11  # the five pending ones expired; the signed-in one did not
    assert rows.sweep(clock.t, pending_s=10, idle_s=3600, max_age_s=86400, max_sessions=100,
                      batch=2) == 2  # fmt: skip
    assert len(store) == 4
    clock.t += 61
    store.new()  # a sweep is due: the other expired ones go
    assert len(store) == 2 and _id(store.get(keep.id)) == keep.id
    assert all(store.get(s.id) is None for s in made)


def test_the_table_holds_no_session_id_and_no_token_in_clear(rows: PortalSessions) -> None:
    store = SessionStore(rows)
    s = _signed_in(store)
    with rows.db.reader() as db:
        (record,) = db.execute(select(PortalSessionRecord.__table__)).all()
    dumped = repr(tuple(record))
    for secret in (s.id, s.csrf, "access-t", "refresh-t"):
        assert secret not in dumped
    sealed = record.secrets
    assert sealed.startswith("sealed:v1:")
    # A sealed value copied into another session's row does not open there.
    other = store.new()
    with rows.db.session() as db:
        db.execute(
            update(PortalSessionRecord)
            .where(PortalSessionRecord.id_hash == id_hash(other.id))
            .values(secrets=sealed)
        )
    assert store.get(other.id) is None and _id(store.get(s.id)) == s.id


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
