"""Portal sessions live in the database: a session made by one server instance is valid in a
second instance on the same database (a replica, or the server after a restart); an expired one
is valid in neither; signing out in one ends it in both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cellplane_platform_support import Platform
from fastapi.testclient import TestClient
from portal_support import BASE, add_user, csrf_of, mount, sign_in
from sqlalchemy import func, select, update

from cellplane.api.app import create_app
from cellplane.portal import install
from cellplane.services.context import Services
from cellplane.services.portal_sessions import id_hash
from cellplane.state.db import Database
from cellplane.state.identity_models import PortalSessionRecord

_PAGE = "/portal/projects/default/cells"


@pytest.fixture
def second(plat: Platform, tmp_path: Path) -> Iterator[Any]:
    """Another server instance: its own process state (services, portal, session store) over
    the same database file and data directory (the secrets key) as `plat`'s."""
    svc = Services(db=Database(plat.svc.db.url), data_dir=plat.svc.data_dir)
    app = create_app(svc, run_controllers=False)
    install(app)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client
    svc.db.dispose()


def _rows(plat: Platform) -> int:
    with plat.svc.db.reader() as s:
        return int(s.scalar(select(func.count()).select_from(PortalSessionRecord)) or 0)


def _signed_out(r: Any) -> bool:
    return r.status_code == 303 and r.headers["location"].startswith("/portal/login")


def test_a_session_made_by_one_instance_is_valid_in_another(plat: Platform, second: Any) -> None:
    first = mount(plat)
    add_user(plat, "rita", "project-member", "default")
    sign_in(first, "rita")
    sid = first.cookies["cp_portal"]
    second.headers["Cookie"] = f"cp_portal={sid}"
    r = second.get(_PAGE)
    assert r.status_code == 200, r.text
    assert "rita" in r.text
    csrf = csrf_of(r.text)  # the same session: its CSRF token works on the first instance too
    r = first.post("/portal/projects/default/volumes", data={"csrf": csrf, "name": "shared"})
    assert r.status_code == 303, r.text
    # A forged id is no session in either.
    forged = sid[:-2] + ("xx" if not sid.endswith("xx") else "yy")
    second.headers["Cookie"] = f"cp_portal={forged}"
    assert _signed_out(second.get(_PAGE))


def test_an_expired_session_is_valid_in_neither(plat: Platform, second: Any) -> None:
    first = mount(plat)
    add_user(plat, "rita", "project-member", "default")
    sign_in(first, "rita")
    sid = first.cookies["cp_portal"]
    with plat.svc.db.session() as s:  # idle for nine hours (the limit is eight)
        s.execute(
            update(PortalSessionRecord)
            .where(PortalSessionRecord.id_hash == id_hash(sid))
            .values(last_seen=PortalSessionRecord.last_seen - 9 * 3600)
        )
    second.headers["Cookie"] = f"cp_portal={sid}"
    assert _signed_out(second.get(_PAGE))
    assert _signed_out(first.get(_PAGE))
    with plat.svc.db.reader() as s:
        assert s.get(PortalSessionRecord, id_hash(sid)) is None  # and its row is gone


def test_signing_out_in_one_instance_ends_the_session_in_both(plat: Platform, second: Any) -> None:
    first = mount(plat)
    add_user(plat, "rita", "project-member", "default")
    page = sign_in(first, "rita")
    sid = first.cookies["cp_portal"]
    before = _rows(plat)
    second.headers["Cookie"] = f"cp_portal={sid}"
    assert second.get(_PAGE).status_code == 200
    r = second.post("/portal/logout", data={"csrf": csrf_of(page)})
    assert r.status_code == 303, r.text
    assert _rows(plat) == before - 1
    with plat.svc.db.reader() as s:
        assert s.get(PortalSessionRecord, id_hash(sid)) is None
    assert first.cookies["cp_portal"] == sid
    assert _signed_out(first.get(_PAGE))
