"""A cell as Docker shows it: `ps` summaries, `inspect` reporting back what was set, states,
`ps` filters. Pure; cells are their API views (`services.views.cell_view`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cellplane.dockerapi import streams, views
from cellplane.dockerapi.mapping import Refused

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def cell(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": "cel-0mx7xq44fbfwl4szc6t0",
        "name": "web",
        "image": "busybox",
        "cpu": 0.25,
        "memory_mb": 64,
        "command": ["-c", "sleep 1000"],
        "entrypoint": ["sh"],
        "workdir": "/srv",
        "user": "1000",
        "hostname": None,
        "env": {"A": "1"},
        "labels": {"team": "blue", "cellplane.docker.restart": "unless-stopped"},
        "ports": [{"container_port": 80, "host_port": 8080, "protocol": "tcp"}],
        "volumes": [{"volume": "data", "path": "/data", "read_only": True}],
        "restart": {"policy": "always", "max_retries": None},
        "stop_timeout": 10.0,
        "desired_state": "RUNNING",
        "state": "RUNNING",
        "message": None,
        "address": "10.89.0.2",
        "exit_code": None,
        "restarts": 2,
        "container_id": "abc",
        "events": [
            {"at": (NOW - timedelta(seconds=5)).isoformat(), "type": "started", "message": ""}
        ],
        "created_at": (NOW - timedelta(minutes=3)).isoformat(),
        "updated_at": (NOW - timedelta(seconds=5)).isoformat(),
    }
    c.update(over)
    return c


def test_docker_ids_are_64_hex_and_stable() -> None:
    a = views.docker_id("cel-1")
    assert len(a) == 64 and int(a, 16) >= 0
    assert a == views.docker_id("cel-1") != views.docker_id("cel-2")


@pytest.mark.parametrize(
    ("over", "state"),
    [
        ({}, "running"),
        (
            {"state": "PENDING", "desired_state": "STOPPED", "container_id": None, "events": []},
            "created",
        ),
        # `docker create`: the container made, not started (also once its start is asked)
        ({"state": "CREATED", "desired_state": "CREATED", "events": []}, "created"),
        ({"state": "CREATED", "desired_state": "RUNNING", "events": []}, "created"),
        (
            {"state": "SCHEDULED", "desired_state": "CREATED", "container_id": None, "events": []},
            "created",
        ),
        ({"state": "EXITED", "desired_state": "STOPPED", "exit_code": 3}, "exited"),
        ({"state": "STOPPED", "desired_state": "STOPPED"}, "exited"),
        ({"state": "EXITED", "desired_state": "RUNNING"}, "restarting"),
        ({"state": "DELETING", "desired_state": "DELETED"}, "removing"),
        ({"state": "PAUSED", "desired_state": "RUNNING"}, "paused"),
        (
            {"state": "FAILED", "desired_state": "RUNNING", "container_id": None, "events": []},
            "dead",
        ),
    ],
)
def test_states(over: dict[str, Any], state: str) -> None:
    assert views.docker_state(cell(**over)) == state


def test_a_made_container_has_not_run_until_it_starts() -> None:
    made = cell(state="CREATED", desired_state="CREATED", events=[])
    pending = cell(state="PENDING", desired_state="CREATED", container_id=None, events=[])
    running = cell()
    starting = cell(state="STARTING", desired_state="RUNNING", events=[])
    assert not views.has_run(made) and not views.has_run(pending) and views.has_run(running)
    assert not views.has_run(starting) and not streams.ran_since(made, starting)
    # What `wait --condition next-exit` and an attach before the start wait for.
    assert not streams.ran_since(pending, made)
    assert streams.ran_since(made, cell(state="EXITED", exit_code=0, events=[]))
    assert streams.ran_since(made, running)


def test_ps_summary() -> None:
    s = views.summary(cell(), NOW)
    assert s["Id"] == views.docker_id("cel-0mx7xq44fbfwl4szc6t0")
    assert s["Names"] == ["/web"]
    assert s["Command"] == "sh -c sleep 1000"
    assert s["State"] == "running" and s["Status"] == "Up 5 seconds"
    assert s["Labels"] == {"team": "blue"}  # Cellplane's own labels are not the user's
    assert s["Ports"] == [{"PrivatePort": 80, "Type": "tcp", "IP": "0.0.0.0", "PublicPort": 8080}]
    exited = views.summary(cell(state="EXITED", desired_state="STOPPED", exit_code=137), NOW)
    assert exited["Status"] == "Exited (137) 5 seconds ago"


def test_inspect_reports_back_what_was_set() -> None:
    i = views.inspect(cell(), "default")
    assert (i["Path"], i["Args"]) == ("sh", ["-c", "sleep 1000"])
    cfg, host = i["Config"], i["HostConfig"]
    assert cfg["Entrypoint"] == ["sh"] and cfg["Cmd"] == ["-c", "sleep 1000"]
    assert (cfg["WorkingDir"], cfg["User"], cfg["Hostname"]) == ("/srv", "1000", "web")
    assert cfg["Env"] == ["A=1"] and cfg["Labels"] == {"team": "blue"}
    assert host["RestartPolicy"] == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert (host["NanoCpus"], host["Memory"]) == (250_000_000, 64 * 1024 * 1024)
    assert host["Binds"] == ["data:/data:ro"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert i["Mounts"][0]["Name"] == "data" and i["Mounts"][0]["RW"] is False
    assert i["State"]["Running"] is True and i["RestartCount"] == 2
    assert i["NetworkSettings"]["Networks"]["default"]["IPAddress"] == "10.89.0.2"
    assert i["CellplaneCell"] == "cel-0mx7xq44fbfwl4szc6t0"


def test_filters_parse_both_forms_and_refuse_unknown_keys() -> None:
    assert views.parse_filters('{"label": ["a=b"]}') == {"label": ["a=b"]}
    assert views.parse_filters('{"status": {"exited": true}}') == {"status": ["exited"]}
    assert views.parse_filters(None) == {}
    with pytest.raises(Refused, match="invalid filter 'ancestor'"):
        views.parse_filters('{"ancestor": ["busybox"]}')
    with pytest.raises(Refused, match="status=sleeping"):
        views.parse_filters('{"status": ["sleeping"]}')
    with pytest.raises(Refused, match="invalid filters"):
        views.parse_filters("{not json")


def test_filters_match_as_docker_does() -> None:
    c = cell()
    did = views.docker_id(c["id"])
    assert views.matches(c, {"label": ["team=blue"]})
    assert views.matches(c, {"label": ["team"]})
    assert not views.matches(c, {"label": ["team=red"]})
    assert not views.matches(c, {"label": ["team=blue", "tier=db"]})  # labels: all of them
    assert views.matches(c, {"name": ["^/we", "nomatch"]})  # names: any, a regular expression
    assert not views.matches(c, {"name": ["^/api"]})
    assert views.matches(c, {"id": [did[:12]]}) and not views.matches(c, {"id": ["ffff"]})
    assert views.matches(c, {"status": ["running", "exited"]})
    assert not views.matches(c, {"status": ["exited"], "label": ["team=blue"]})
    with pytest.raises(Refused, match="invalid filter 'name=\\['"):
        views.matches(c, {"name": ["["]})


def test_inspect_reports_the_runtime_of_the_cells_isolation_class() -> None:
    assert views.inspect(cell(isolation="sandbox"), "default")["HostConfig"]["Runtime"] == "runsc"
    assert views.inspect(cell(), "default")["HostConfig"]["Runtime"] == "runc"


def test_a_paused_container_is_up_and_paused() -> None:
    paused = cell(state="PAUSED")
    assert views.status_text(paused, NOW).endswith(" (Paused)")
    state = views.inspect(paused, "bridge")["State"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
    assert views.matches(paused, views.parse_filters('{"status": ["paused"]}'))
    assert not views.matches(cell(), views.parse_filters('{"status": ["paused"]}'))
