"""The agent/v1 models: each survives a round trip through JSON, another version is refused
naming ``api_version``, a malformed message is refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from cellplane.wire import agent as wire

V1 = {"api_version": wire.API_VERSION}
ENGINE = {"state": "DOWN", "message": "gone", "since": "2026-12-03T10:00:00+00:00", "restarts": 2}
CELL = {
    "cell_id": "cel-1",
    "name": "web",
    "project_id": "prj-1",
    "network": {"name": "cp-prj-1", "subnet": "10.128.0.0/24", "driver": "bridge"},
    "image": {"id": "img-1", "kind": "oci", "engine_ref": "localhost/web:1", "sha256": "ab"},
    "cpu": 0.5,
    "memory_mb": 256,
    "command": ["sleep", "60"],
    "env": {"K": "V"},
    "labels": {"app": "web"},
    "ports": [{"container_port": 80, "host_port": 8080, "protocol": "tcp"}],
    "mounts": [{"volume_id": "vol-1", "engine_name": "cp-vol-1", "path": "/d", "read_only": True}],
    "restart": {"policy": "on-failure", "max_retries": 3},
    "stop_timeout": 5.0,
    "desired_state": "RUNNING",
    "restarts": 1,
    "restart_requested_at": "2026-12-03T10:00:00+00:00",
    "ended_at": None,
    "healthcheck": {"command": ["pg_isready"], "interval_s": 2.0, "retries": 4},
}
MESSAGES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        wire.RegisterRequest,
        {
            **V1,
            "join_token": "cpj_x",
            "name": "node-1",
            "address": "10.0.0.5",
            "capacity": {"cpu": 8.0, "memory_mb": 16384, "disk_gb": 200},
            "labels": {"disk": "ssd"},
            "zone": "z1",
            "agent_url": "https://10.0.0.5:7443",
            "agent_secret": "s",
            "engine": ENGINE,
            "csr": "-----BEGIN CERTIFICATE REQUEST-----",
        },
    ),
    (
        wire.RegisterAnswer,
        {
            **V1,
            "host_id": "hst-1",
            "host_token": "t",
            "certificate": "c",
            "certificate_chain": "cc",
        },
    ),
    (wire.Heartbeat, V1),
    (
        wire.Assignments,
        {
            **V1,
            "revision": 7,
            "full": True,
            "cells": [CELL],
            "volumes": [{"volume_id": "vol-1", "engine_name": "cp-vol-1", "state": "DELETING"}],
        },
    ),
    (
        wire.StatusReport,
        {
            **V1,
            "cells": [
                {
                    "cell_id": "cel-1",
                    "state": "RUNNING",
                    "container_id": "3f2a",
                    "events": [{"at": "2026-12-03T10:00:00+00:00", "type": "started"}],
                },
                {
                    "cell_id": "cel-2",
                    "generation": 3,
                    "health": {
                        "status": "unhealthy",
                        "failing_streak": 4,
                        "log": [{"start": "a", "end": "b", "exit_code": -1, "output": "timeout"}],
                    },
                },
                {"volume_removed": "vol-1"},
                {"engine": ENGINE},
            ],
        },
    ),
]


@pytest.mark.parametrize(("model", "data"), MESSAGES, ids=lambda m: getattr(m, "__name__", ""))
def test_each_message_survives_a_round_trip(model: type[BaseModel], data: dict[str, Any]) -> None:
    first = wire.parse(model, data)
    assert wire.parse(model, first.model_dump(mode="json")) == first
    # As the peers send them (exclude_unset: presence is meaningful in reports).
    sent = first.model_dump(mode="json", exclude_unset=True)
    assert sent == data
    again = wire.parse(model, sent)
    assert again == first and again.model_dump(mode="json", exclude_unset=True) == sent
    assert first.api_version == wire.API_VERSION  # type: ignore[attr-defined]


def test_report_items_keep_their_kind_and_what_was_sent() -> None:
    report = wire.parse(wire.StatusReport, MESSAGES[-1][1])
    cell, health, volume, engine = report.cells
    assert isinstance(cell, wire.CellReport) and cell.state == "RUNNING"
    assert isinstance(health, wire.CellReport) and health.state is None
    assert health.health is not None and health.health.log[0].exit_code == -1
    assert isinstance(volume, wire.VolumeRemoved) and volume.volume_removed == "vol-1"
    assert isinstance(engine, wire.EngineItem) and engine.engine.state == "DOWN"
    # Absent means unchanged: `message` was not sent, so it is not in the dump either.
    assert "message" not in cell.model_dump(exclude_unset=True)
    cleared = wire.report_item({"cell_id": "cel-1", "message": None})
    assert cleared.model_dump(exclude_unset=True) == {"cell_id": "cel-1", "message": None}


def test_a_bare_network_name_is_the_default_network() -> None:
    cell = wire.parse(wire.CellAssignment, {**CELL, "network": "cp-prj-1"})
    assert cell.network == wire.NetworkDescription(name="cp-prj-1")


def test_unknown_fields_are_ignored() -> None:
    hb = wire.parse(wire.Heartbeat, {**V1, "added_in_a_later_release": 1})
    assert hb.api_version == wire.API_VERSION


def test_a_message_without_a_version_is_read_as_v1() -> None:
    assert wire.parse(wire.Heartbeat, {}).api_version is None
    assert wire.parse(wire.Assignments, {"revision": 1}).api_version == wire.API_VERSION


@pytest.mark.parametrize(("model", "data"), MESSAGES, ids=lambda m: getattr(m, "__name__", ""))
@pytest.mark.parametrize("version", ["agent/v2", "v1", None])
def test_another_version_is_refused_naming_api_version(
    model: type[BaseModel], data: dict[str, Any], version: str | None
) -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.parse(model, {**data, "api_version": version})
    assert info.value.version_mismatch
    ((field, message),) = info.value.problems
    assert field == "api_version"
    assert wire.API_VERSION in message and "same release" in message


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (
            wire.StatusReport,
            {**V1, "cells": [{"cell_id": "c", "exit_code": "x"}]},
            "cells.0.exit_code",
        ),
        (wire.StatusReport, {**V1, "cells": [{"state": "RUNNING"}]}, "cells.0.cell_id"),
        (
            wire.StatusReport,
            {**V1, "cells": [{"engine": {"restarts": "many"}}]},
            "cells.0.engine.restarts",
        ),
        (wire.StatusReport, {**V1, "cells": "all"}, "cells"),
        (wire.Assignments, {**V1}, "revision"),
        (
            wire.Assignments,
            {**V1, "revision": 1, "cells": [{**CELL, "cpu": "lots"}]},
            "cells.0.cpu",
        ),
        (wire.RegisterRequest, {**V1, "capacity": {"cpu": 1}}, "capacity.memory_mb"),
        (wire.RegisterRequest, {**V1, "csr": 42}, "csr"),
    ],
)
def test_a_malformed_message_is_refused_naming_the_field(
    model: type[BaseModel], data: dict[str, Any], field: str
) -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.parse(model, data)
    assert field in [f for f, _ in info.value.problems], info.value.problems
    assert not info.value.version_mismatch
    assert field in str(info.value)


def test_a_body_that_is_no_object_is_refused() -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.parse(wire.StatusReport, ["cells"])
    assert info.value.problems[0][0] == "body"
