"""The leader election's pure state machine, and what GET /v1/system/leader says on SQLite."""

from __future__ import annotations

import pytest
from cellplane_platform_support import Platform

from cellplane.controller.election import Action, Election, Observation, Role


def test_a_follower_that_gets_the_lock_takes_over_under_the_new_epoch() -> None:
    e = Election()
    assert e.observe(Observation(holds_lock=False)) is Action.NONE
    assert not e.leading
    assert e.observe(Observation(holds_lock=True)) is Action.TAKE_OVER
    e.took(7)
    assert (e.role, e.epoch) == (Role.LEADER, 7)
    assert e.observe(Observation(holds_lock=True, db_epoch=7)) is Action.NONE
    assert e.leading


def test_a_leader_that_loses_its_lock_steps_down() -> None:
    e = Election()
    e.observe(Observation(holds_lock=True))
    e.took(1)
    assert e.observe(Observation(holds_lock=False)) is Action.STEP_DOWN
    assert (e.role, e.epoch) == (Role.FOLLOWER, None)
    # and takes over again (under a newer epoch) only when it gets the lock again
    assert e.observe(Observation(holds_lock=False)) is Action.NONE
    assert e.observe(Observation(holds_lock=True)) is Action.TAKE_OVER


def test_a_leader_whose_epoch_moved_on_is_fenced_out_even_with_the_lock() -> None:
    e = Election()
    e.observe(Observation(holds_lock=True))
    e.took(3)
    assert e.observe(Observation(holds_lock=True, db_epoch=4)) is Action.STEP_DOWN
    assert not e.leading


def test_an_unreadable_epoch_does_not_make_a_leader_step_down() -> None:
    e = Election()
    e.observe(Observation(holds_lock=True))
    e.took(2)
    assert e.observe(Observation(holds_lock=True, db_epoch=None)) is Action.NONE
    assert e.epoch == 2


def test_a_failed_takeover_stays_a_follower_and_epochs_start_at_one() -> None:
    e = Election()
    assert e.observe(Observation(holds_lock=True)) is Action.TAKE_OVER
    e.failed()
    assert (e.role, e.epoch) == (Role.FOLLOWER, None)
    with pytest.raises(ValueError, match="epoch starts at 1"):
        e.took(0)


def test_on_sqlite_the_one_server_leads(plat: Platform) -> None:
    r = plat.client.get("/v1/system/leader", headers=plat.admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["database"] == "sqlite"
    assert body["leading"] is True
    assert body["leader"] == body["replica"] == plat.svc.replica
    assert body["epoch"] == 0


def test_the_leader_route_needs_a_credential(plat: Platform) -> None:
    assert plat.client.get("/v1/system/leader").status_code == 401


def test_cli_admin_leader_shows_the_leading_replica(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cellplane.cli import output
    from cellplane.cli.main import app
    from cellplane.client import Client

    transport = plat.client._transport
    monkeypatch.setattr(
        output, "client_factory", lambda: Client(str(plat.client.base_url), plat.admin_token,
                                                 transport=transport, retries=1)
    )  # fmt: skip
    runner = CliRunner()
    table = runner.invoke(app, ["admin", "leader"])
    assert table.exit_code == 0, table.output
    assert plat.svc.replica in table.output and "sqlite" in table.output
    rows = {" ".join(line.split()[:-1]): line.split()[-1] for line in table.output.splitlines()}
    assert rows.get("answering replica leads") == "yes", table.output
    as_json = runner.invoke(app, ["admin", "leader", "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    import json

    body = json.loads(as_json.output)
    assert body["leader"] == plat.svc.replica and body["leading"] is True


def test_relay_payloads_stay_under_the_notify_limit_and_keep_every_topic_once() -> None:
    import json

    from cellplane.services.relay import chunks

    topics = [f"cell:{i:06d}-{'x' * 40}" for i in range(600)] + ["controller", "controller"]
    payloads = chunks("replica-1", topics)
    assert len(payloads) > 1
    assert all(len(p.encode()) < 8000 for p in payloads)
    seen = [t for p in payloads for t in json.loads(p)["topics"]]
    assert seen == list(dict.fromkeys(topics))
    assert {json.loads(p)["from"] for p in payloads} == {"replica-1"}
