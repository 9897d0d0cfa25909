"""Portal sessions on PostgreSQL (migration 0021): two stores over one database (two server
replicas) share a session; the sweep and the refresh claim run as on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from cellplane.portal.session import SessionStore
from cellplane.sealing import Sealer
from cellplane.services.portal_sessions import PortalSessions
from cellplane.state.db import Database, migrate

from .conftest import PostgresServer


@pytest.mark.integration
def test_two_replicas_share_portal_sessions_on_postgresql(
    pg: PostgresServer, tmp_path: Path
) -> None:
    url = pg.create_database("portal_sessions")
    migrate(url)
    dbs = [Database(url), Database(url)]
    try:
        clock = [1000.0]
        one, two = (
            SessionStore(PortalSessions(db, Sealer(tmp_path)), pending_s=10, clock=lambda: clock[0])
            for db in dbs
        )
        s = one.new()
        s.access_token, s.refresh_token, s.user = "a", "r", "rita"
        one.save(s)
        got = two.get(s.id)
        assert got is not None and got.user == "rita" and got.csrf == s.csrf
        assert one.claim_refresh(s) and not two.claim_refresh(got)  # one replica at a time
        got.access_token = "a2"
        two.save(got)  # ends the claim
        assert two.claim_refresh(got)
        pending = [two.new() for _ in range(3)]
        clock[0] += 11
        assert (
            one.rows.sweep(clock[0], pending_s=10, idle_s=3600, max_age_s=86400, max_sessions=2)
            == 3
        )
        assert all(one.get(p.id) is None for p in pending)
        refreshed = one.get(s.id)
        assert refreshed is not None and refreshed.access_token == "a2"
        assert two.drop(s.id) and one.get(s.id) is None and len(one) == 0
    finally:
        for db in dbs:
            db.dispose()
