"""A server that was down itself judges hosts that beat just before it started from its start
(`Services.watching_since`): a restart of the server alone makes no live host SUSPECT or DOWN,
while a host that was silent for longer than the DOWN threshold stays DOWN (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from cellplane.services.context import Services
from cellplane.services.host_views import host_status
from cellplane.state.models import Host

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _svc(started: datetime | None) -> Services:
    return Services(
        db=cast(Any, None),
        data_dir=Path("/nonexistent"),
        heartbeat_suspect_s=6.0,
        heartbeat_down_s=10.0,
        watching_since=started,
    )


def _host(beat_s_before_start: float) -> Host:
    return Host(
        id="hst-1",
        name="h1",
        maintenance=False,
        fence_revision=0,
        fenced_revision=0,
        engine_state="UP",
        last_heartbeat=T0 - timedelta(seconds=beat_s_before_start),
    )


@pytest.mark.parametrize(
    ("beat_before", "after_start", "state"),
    [
        (8.0, 1.0, "READY"),  # beat 8 s before a slow restart: judged from the start
        (8.0, 7.0, "SUSPECT"),  # and it has not beaten since: 7 s of this server's watch
        (8.0, 11.0, "DOWN"),
        (30.0, 1.0, "DOWN"),  # silent well before the server went: still DOWN at once
        (-1.0, 1.0, "READY"),  # it beat after the start: its own beat counts
    ],
)
def test_hosts_are_judged_from_the_servers_start_when_they_beat_just_before(
    beat_before: float, after_start: float, state: str
) -> None:
    now = T0 + timedelta(seconds=after_start)
    assert host_status(_host(beat_before), now, _svc(T0))[0] == state


def test_without_a_start_the_last_beat_alone_counts() -> None:
    assert host_status(_host(8.0), T0 + timedelta(seconds=1), _svc(None))[0] == "SUSPECT"
