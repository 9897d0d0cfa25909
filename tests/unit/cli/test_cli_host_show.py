"""`cellplane host show`: a host's state and why (here: its container engine is down)."""

from __future__ import annotations

import json
from collections.abc import Callable

from cellplane_fake_api import FakeApi
from typer.testing import Result

Invoke = Callable[..., Result]

REASON = "container engine down since 2024-01-01T00:00:00+00:00: podman service process died"


def test_host_show_says_why_a_host_takes_no_work(cli: Invoke, fake: FakeApi) -> None:
    fake.hosts["hst-2"].update(
        state="SUSPECT",
        state_reason=REASON,
        engine={
            "state": "DOWN",
            "since": "2024-01-01T00:00:00+00:00",
            "message": "podman service process died (killed by signal 9)",
            "outages": 1,
        },
    )
    result = cli("host", "show", "node-b")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # the table may wrap long values
    assert "SUSPECT" in text
    assert "container engine down" in text
    assert "killed by signal 9" in text
    assert "DOWN since 2024-01-01" in text and "1 outage(s) recovered" in text
    shown = json.loads(cli("host", "show", "hst-2", "-o", "json").stdout)
    assert shown["state_reason"] == REASON


def test_host_show_of_a_ready_host_and_of_an_unknown_one(cli: Invoke) -> None:
    result = cli("host", "show", "node-a")
    assert result.exit_code == 0, result.output
    assert "READY" in result.stdout
    assert cli("host", "show", "node-z").exit_code == 1
