"""Docker's healthchecks on the endpoint (`dockerapi.healthchecks`): `--health-*` onto the cell's
check and back in `inspect`, the reported health in `State.Health`, `docker ps`'s STATUS and its
`health` filter, and the refusals. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from test_docker_mapping import body
from test_docker_views import cell

from cellplane.dockerapi import views
from cellplane.dockerapi.healthchecks import healthcheck_fields
from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.services.schemas import CellCreate

S = 1_000_000_000
NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def test_the_clis_health_options_map_onto_the_cells_check_and_back() -> None:
    # docker run --health-cmd 'pg_isready || exit 1' --health-interval 2s --health-timeout 1s
    #   --health-retries 4 --health-start-period 5s
    given = {
        "Test": ["CMD-SHELL", "pg_isready || exit 1"],
        "Interval": 2 * S,
        "Timeout": 1 * S,
        "Retries": 4,
        "StartPeriod": 5 * S,
    }
    fields = cell_fields("db", body(Healthcheck=given))
    assert fields["healthcheck"] == {
        "command": ["pg_isready || exit 1"],
        "shell": True,
        "interval_s": 2.0,
        "timeout_s": 1.0,
        "start_period_s": 5.0,
        "retries": 4,
    }
    created = CellCreate.model_validate(fields)
    assert created.healthcheck is not None and created.healthcheck.shell
    shown = views.inspect(cell(healthcheck=created.healthcheck.model_dump()), "bridge")
    assert shown["Config"]["Healthcheck"] == given


def test_exec_form_and_dockerds_defaults() -> None:
    check = healthcheck_fields({"Test": ["CMD", "redis-cli", "ping"]})
    assert check == {
        "command": ["redis-cli", "ping"],
        "shell": False,
        "interval_s": 30.0,
        "timeout_s": 30.0,
        "start_period_s": 0.0,
        "retries": 3,
    }


@pytest.mark.parametrize("raw", [None, {}, {"Test": []}, {"Test": ["NONE"]}])
def test_no_check_none_and_the_images_own_make_a_cell_without_one(raw: Any) -> None:
    assert healthcheck_fields(raw) is None
    assert "healthcheck" not in cell_fields("x", body(Healthcheck=raw))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("pg_isready", "must be a JSON object"),
        ({"Test": "CMD-SHELL true"}, "list of strings"),
        ({"Test": ["CMD-SHELL"]}, "one command string"),
        ({"Test": ["CMD-SHELL", "a", "b"]}, "one command string"),
        ({"Test": ["CMD"]}, "needs a program"),
        ({"Test": ["SHELL", "x"]}, "unknown type 'SHELL'"),
        ({"Test": ["CMD", "x"], "Interval": S // 100}, "--health-interval 0.01s"),
        ({"Test": ["CMD", "x"], "Timeout": -5}, "--health-timeout"),
        ({"Test": ["CMD", "x"], "Interval": "2s"}, "--health-interval"),
        ({"Test": ["CMD", "x"], "Retries": -1}, "--health-retries"),
        ({"Test": ["CMD", "x"], "StartInterval": S}, "--health-start-interval"),
    ],
)
def test_a_check_the_endpoint_cannot_run_is_refused_naming_the_option(raw: Any, words: str) -> None:
    with pytest.raises(Refused) as err:
        cell_fields("x", body(Healthcheck=raw))
    assert err.value.status == 400 and words in err.value.message


CHECK = {
    "command": ["true"],
    "shell": False,
    "interval_s": 1.0,
    "timeout_s": 1.0,
    "retries": 3,
    "start_period_s": 0.0,
}
PROBE = {"start": "a", "end": "b", "exit_code": 1, "output": "no"}


def test_state_health_and_ps_show_the_reported_health() -> None:
    plain = cell()
    assert "Health" not in views.inspect(plain, "bridge")["State"]
    assert not views.status_text(plain, NOW).endswith(")")
    waiting = cell(healthcheck=CHECK, health=None)
    assert views.inspect(waiting, "bridge")["State"]["Health"] == {
        "Status": "starting",
        "FailingStreak": 0,
        "Log": [],
    }
    assert views.status_text(waiting, NOW).endswith(" (health: starting)")
    sick = cell(
        healthcheck=CHECK, health={"status": "unhealthy", "failing_streak": 3, "log": [PROBE]}
    )
    assert views.inspect(sick, "bridge")["State"]["Health"] == {
        "Status": "unhealthy",
        "FailingStreak": 3,
        "Log": [{"Start": "a", "End": "b", "ExitCode": 1, "Output": "no"}],
    }
    assert views.status_text(sick, NOW).endswith(" (unhealthy)")
    # A stopped cell that never reported has no health yet; one that did keeps its last.
    assert "Health" not in views.inspect(cell(healthcheck=CHECK, state="EXITED"), "bridge")["State"]


def test_the_health_filter() -> None:
    cells = {
        "none": cell(),
        "starting": cell(healthcheck=CHECK),
        "healthy": cell(healthcheck=CHECK, health={"status": "healthy"}),
        "unhealthy": cell(healthcheck=CHECK, health={"status": "unhealthy"}),
    }
    for status in cells:
        f = views.parse_filters(f'{{"health": ["{status}"]}}')
        assert [k for k, c in cells.items() if views.matches(c, f)] == [status]
    with pytest.raises(Refused) as err:
        views.parse_filters('{"health": ["sick"]}')
    assert "health=sick" in err.value.message
