"""Heartbeats written in batches (`services.heartbeats`, `hosts.heartbeat`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cellplane_platform_support import Platform

from cellplane.errors import NotFound
from cellplane.ids import utcnow
from cellplane.services import hosts
from cellplane.services.heartbeats import HeartbeatBuffer
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
        "h1": T0 + timedelta(seconds=0.6),
        "h2": T0 + timedelta(seconds=0.5),
        "h3": T0 + timedelta(seconds=1),
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
