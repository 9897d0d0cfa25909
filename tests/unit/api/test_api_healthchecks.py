"""A cell's health check through the API: created with the cell, sent to its host's agent,
refused when malformed (nothing made), and the health the agent reports kept on the cell with
an event at each new status, without touching the cell's state."""

from __future__ import annotations

from typing import Any

import pytest
from cellplane_platform_support import Platform

CHECK = {"command": ["pg_isready"], "interval_s": 2, "retries": 2}


def _probe(code: int) -> dict[str, Any]:
    return {
        "start": "2026-12-06T03:00:00+00:00",
        "end": "2026-12-06T03:00:01+00:00",
        "exit_code": code,
        "output": "out",
    }


def test_a_check_goes_with_the_cell_to_its_host_agent(plat: Platform) -> None:
    r = plat.create_cell("db", cpu=0.25, memory_mb=64, healthcheck=CHECK)
    assert r.status_code == 202, r.text
    cell_id = plat.cell_id("db")
    view = plat.cell(cell_id)
    assert view["healthcheck"] == {
        "command": ["pg_isready"],
        "shell": False,
        "interval_s": 2.0,
        "timeout_s": 30.0,
        "retries": 2,
        "start_period_s": 0.0,
    }
    assert view["health"] is None
    plat.schedule()
    (a,) = plat.assignments()["cells"]
    assert a["healthcheck"] == view["healthcheck"]
    plat.create_cell("plain", cpu=0.25, memory_mb=64)
    plat.schedule()
    plain = [c for c in plat.assignments()["cells"] if c["name"] == "plain"]
    assert plain[0]["healthcheck"] is None


@pytest.mark.parametrize(
    ("check", "names"),
    [
        ({"command": []}, "command"),
        ({"command": [""]}, "command"),
        ({"command": ["a", "b"], "shell": True}, "shell"),
        ({"command": ["x"], "interval_s": 0.01}, "interval_s"),
        ({"command": ["x"], "retries": 0}, "retries"),
        ({"command": ["x"], "start_period_s": -1}, "start_period_s"),
        ({"command": ["x"], "every": 3}, "every"),
    ],
)
def test_a_malformed_check_is_refused_naming_it_and_nothing_is_made(
    plat: Platform, check: dict[str, Any], names: str
) -> None:
    r = plat.create_cell("bad", cpu=0.25, memory_mb=64, healthcheck=check)
    assert r.status_code == 422, r.text
    assert names in r.text and "healthcheck" in r.text
    assert plat.cell_count() == 0


def test_reported_health_is_kept_with_an_event_per_new_status(plat: Platform) -> None:
    plat.create_cell("db", cpu=0.25, memory_mb=64, healthcheck=CHECK)
    cell_id = plat.cell_id("db")
    plat.schedule()
    plat.report({"cell_id": cell_id, "state": "RUNNING", "container_id": "ctr1"})
    for status, streak, log in (
        ("starting", 0, []),
        ("starting", 1, [_probe(1)]),
        ("unhealthy", 2, [_probe(1), _probe(1)]),
        ("healthy", 0, [_probe(1), _probe(1), _probe(0)]),
    ):
        plat.report(
            {"cell_id": cell_id, "health": {"status": status, "failing_streak": streak, "log": log}}
        )
        view = plat.cell(cell_id)
        assert view["health"]["status"] == status and view["health"]["failing_streak"] == streak
        assert view["state"] == "RUNNING" and view["container_id"] == "ctr1"
    assert view["health"]["log"][-1] == _probe(0)
    events = [e["message"] for e in view["events"] if e["type"] == "health_status"]
    assert events == ["starting", "unhealthy", "healthy"]
