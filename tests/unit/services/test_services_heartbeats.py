"""Heartbeats written in batches (`services.heartbeats`, `hosts.heartbeat`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cellplane_platform_support import Platform

from cellplane.errors import NotFound
from cellplane.ids import utcnow
from cellplane.services import hosts
from cellplane.services.heartbeats import HeartbeatBuffer, VerifiedTokens
from cellplane.state.models import Host

T0 = utcnow()


def test_beats_wait_until_the_oldest_is_due_then_all_go_together() -> None:
    tick = [0.0]
    buf = HeartbeatBuffer(flush_s=1.0, clock=lambda: tick[0])
    assert buf.record("h1", T0) == {}
    tick[0] = 0.5
    assert buf.record("h2", T0 + timedelta(seconds=0.5)) == {}
    assert buf.record("h1", T0 + timedelta(seconds=0.6)) == {}  # the newer beat replaces it
    tick[0] = 1.0
    due = buf.record("h3", T0 + timedelta(seconds=1))
    assert due == {
        "h1": (T0 + timedelta(seconds=0.6), None),
        "h2": (T0 + timedelta(seconds=0.5), None),
        "h3": (T0 + timedelta(seconds=1), None),
    }
    assert buf.record("h1", T0 + timedelta(seconds=1.1)) == {}  # a new batch starts


def test_a_negative_flush_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="flush_s"):
        HeartbeatBuffer(flush_s=-1)


def _last(plat: Platform) -> object:
    with plat.svc.db.reader() as s:
        h = s.get(Host, plat.host_id)
        assert h is not None
        return h.last_heartbeat


def test_the_first_beat_is_written_at_once_later_ones_in_a_batch(plat: Platform) -> None:
    tick = [0.0]
    plat.svc.heartbeats = HeartbeatBuffer(flush_s=1.0, clock=lambda: tick[0])
    hosts.heartbeat(plat.svc, plat.host_id)
    first = _last(plat)
    hosts.heartbeat(plat.svc, plat.host_id)  # kept in memory
    assert _last(plat) == first
    tick[0] = 2.0
    hosts.heartbeat(plat.svc, plat.host_id)  # the pending beat is due: written with this one
    assert _last(plat) != first
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "READY"


def test_a_beat_of_an_unknown_host_is_refused(plat: Platform) -> None:
    with pytest.raises(NotFound):
        hosts.heartbeat(plat.svc, "hst-nope")


def test_a_token_checked_lately_is_known_until_its_time_is_up_or_it_is_forgotten() -> None:
    tick = [0.0]
    memo = VerifiedTokens(ttl_s=30.0, clock=lambda: tick[0])
    assert not memo.known("h1", "d1")
    memo.remember("h1", "d1")
    assert memo.known("h1", "d1")
    assert not memo.known("h1", "d2") and not memo.known("h2", "d1")
    tick[0] = 29.9
    assert memo.known("h1", "d1")
    tick[0] = 30.0
    assert not memo.known("h1", "d1")
    memo.remember("h1", "d1")
    memo.forget("h1")
    assert not memo.known("h1", "d1")
    with pytest.raises(ValueError, match="ttl_s"):
        VerifiedTokens(ttl_s=-1)


def _host_reads(plat: Platform, call: Callable[[], object]) -> list[str]:
    with plat.statements() as seen:
        call()
    return [q for q in seen if "FROM hosts" in q]


def test_a_beat_whose_token_was_checked_lately_reads_no_host_row(plat: Platform) -> None:
    url = f"/v1/agent/hosts/{plat.host_id}/heartbeat"
    first = _host_reads(plat, lambda: plat.client.post(url, json={}, headers=plat.agent))
    assert first  # the token is checked against the database once ...

    def beat() -> None:
        r = plat.client.post(url, json={"api_version": "agent/v1"}, headers=plat.agent)
        assert r.status_code == 204, r.text

    assert _host_reads(plat, beat) == []  # ... and remembered
    # A token that is not the one remembered is checked, and refused.
    wrong = plat.client.post(url, json={}, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    # So is a body of another protocol version, after the credential.
    bad = plat.client.post(url, json={"api_version": "agent/v0"}, headers=plat.agent)
    assert bad.status_code == 422 and "api_version" in bad.text


def test_a_revoked_host_is_refused_at_once_and_beats_with_its_old_token_are_not_written(
    plat: Platform,
) -> None:
    url = f"/v1/agent/hosts/{plat.host_id}/heartbeat"
    assert plat.client.post(url, json={}, headers=plat.agent).status_code == 204
    assert plat.client.post(url, json={}, headers=plat.agent).status_code == 204  # remembered
    r = plat.client.post(f"/v1/hosts/{plat.host_id}/revoke", headers=plat.admin)
    assert r.status_code == 200, r.text
    refused = plat.client.post(url, json={}, headers=plat.agent)
    assert refused.status_code == 401
    # Another replica may still remember the old token for a while: the beats it keeps are
    # written only while the token is the host's, so the revoked host's do not count.
    before = _last(plat)
    tick = [0.0]
    plat.svc.heartbeats = HeartbeatBuffer(flush_s=1.0, clock=lambda: tick[0])
    plat.svc.heartbeats.written(plat.host_id, before)
    hosts.heartbeat(plat.svc, plat.host_id, plat.host_token)
    tick[0] = 2.0
    hosts.heartbeat(plat.svc, plat.host_id, plat.host_token)  # due: the batch is written
    assert _last(plat) == before
    # A certificate's beat (no token) is written as before.
    hosts.heartbeat(plat.svc, plat.host_id)
    tick[0] = 4.0
    hosts.heartbeat(plat.svc, plat.host_id)
    assert _last(plat) != before


def test_a_beat_waiting_in_memory_keeps_its_host_ready_however_old_the_written_one(
    plat: Platform,
) -> None:
    tick = [0.0]
    plat.svc.heartbeats = HeartbeatBuffer(flush_s=1.0, clock=lambda: tick[0])
    hosts.heartbeat(plat.svc, plat.host_id)  # the first: written
    long_ago = utcnow() - timedelta(hours=1)
    with plat.svc.db.session() as s:
        h = s.get(Host, plat.host_id)
        assert h is not None
        h.last_heartbeat = long_ago  # as if the batches had waited for the write lock that long
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "READY"  # the first beat, heard
    plat.svc.heartbeats = HeartbeatBuffer(flush_s=1.0, clock=lambda: tick[0])  # a new process
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "DOWN"
    plat.svc.heartbeats.written(plat.host_id, long_ago)
    hosts.heartbeat(plat.svc, plat.host_id)  # kept in memory, not written
    assert _last(plat) == long_ago
    assert hosts.get_host(plat.svc, plat.host_id)["state"] == "READY"


def test_a_batch_written_late_never_replaces_a_newer_beat(plat: Platform) -> None:
    tick = [0.0]
    plat.svc.heartbeats = buf = HeartbeatBuffer(flush_s=1.0, clock=lambda: tick[0])
    hosts.heartbeat(plat.svc, plat.host_id)
    newer = _last(plat)
    assert isinstance(newer, datetime)
    older = newer - timedelta(seconds=5)
    buf.record(plat.host_id, older)
    tick[0] = 2.0
    owed = hosts.beat(plat.svc, "hst-other")  # not seen: its own first write, not the batch
    assert owed is not None and owed.before_answer
    due = buf.record(plat.host_id, older)  # the batch, due, holding the older beat
    assert due == {plat.host_id: (older, None)}
    hosts._write_batch(plat.svc, due)
    assert _last(plat) == newer
