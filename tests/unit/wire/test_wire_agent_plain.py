"""The agent's pydantic-free reading of agent/v1 (`wire.agent_plain`) is the server's contract
(`wire.agent`): the same messages, fields, required fields and defaults; the same messages read
to the same values; the same refusals naming the same fields."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from test_wire_agent import CELL, MESSAGES, V1

from cellplane.wire import agent as server_wire
from cellplane.wire import agent_plain as plain

SRC = Path(__file__).resolve().parents[3] / "src"


def _server_models() -> dict[str, type[BaseModel]]:
    return {
        name: obj
        for name in dir(server_wire)
        if isinstance(obj := getattr(server_wire, name), type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == server_wire.__name__
        and not name.startswith("_")
    }


def test_both_sides_define_the_same_messages_and_version() -> None:
    assert plain.API_VERSION == server_wire.API_VERSION
    assert set(plain.MODELS) == set(_server_models())


@pytest.mark.parametrize("name", sorted(plain.MODELS))
def test_each_message_has_the_same_fields_required_fields_and_defaults(name: str) -> None:
    ours = {f.name: f for f in dataclasses.fields(plain.MODELS[name])}
    theirs = _server_models()[name].model_fields
    assert set(ours) == set(theirs)
    for field_name, info in theirs.items():
        f = ours[field_name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        assert required == info.is_required(), field_name
        if not required:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            expected = info.get_default(call_default_factory=True)
            if isinstance(expected, BaseModel):
                expected = expected.model_dump()
                default = dataclasses.asdict(default)
            assert default == expected, field_name


@pytest.mark.parametrize(("model", "data"), MESSAGES, ids=lambda m: getattr(m, "__name__", ""))
def test_a_message_reads_to_the_same_values_on_both_sides(
    model: type[BaseModel], data: dict[str, Any]
) -> None:
    ours = plain.parse(plain.MODELS[model.__name__], data)
    assert plain.dump(ours) == server_wire.parse(model, data).model_dump(mode="json")


@pytest.mark.parametrize(
    "cell",
    [
        {**CELL, "network": "cp-prj-1"},  # a bare network name
        {**CELL, "cpu": "1.5", "memory_mb": "64", "restarts": 2.0},  # pydantic's lax numbers
        {**CELL, "command": ("sh", "-c", "true"), "added_later": {"x": 1}},  # tuple, unknown
        {**CELL, "mounts": [{**CELL["mounts"][0], "read_only": 0}]},
        {**CELL, "mounts": [{"path": "/h", "host_path": "/srv/x", "host_root": "/srv"}]},
    ],
)
def test_lax_and_newer_input_reads_the_same(cell: dict[str, Any]) -> None:
    data = {**V1, "revision": 3, "cells": [cell]}
    ours = plain.dump(plain.parse(plain.Assignments, data))
    assert ours == server_wire.parse(server_wire.Assignments, data).model_dump(mode="json")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("StatusReport", {**V1, "cells": [{"cell_id": "c", "exit_code": "x"}]}),
        ("StatusReport", {**V1, "cells": [{"state": "RUNNING"}]}),
        ("StatusReport", {**V1, "cells": [{"engine": {"restarts": "many"}}]}),
        ("StatusReport", {**V1, "cells": "all"}),
        ("Assignments", {**V1}),
        ("Assignments", {**V1, "revision": 1, "cells": [{**CELL, "cpu": "lots"}]}),
        ("Assignments", {**V1, "revision": 1, "cells": [{**CELL, "memory_mb": 1.5}]}),
        ("Assignments", {**V1, "revision": 1, "cells": [{**CELL, "env": {"K": 1}}]}),
        ("RegisterRequest", {**V1, "capacity": {"cpu": 1}}),
        ("RegisterRequest", {**V1, "csr": 42}),
        ("RegisterAnswer", {**V1, "host_id": "h"}),
        ("Heartbeat", {"api_version": "agent/v2"}),
        ("Assignments", {"api_version": None, "revision": 1}),
        ("StatusReport", ["cells"]),
    ],
)
def test_both_sides_refuse_the_same_messages_naming_the_same_fields(name: str, data: Any) -> None:
    with pytest.raises(server_wire.ProtocolError) as theirs:
        server_wire.parse(_server_models()[name], data)
    with pytest.raises(plain.ProtocolError) as ours:
        plain.parse(plain.MODELS[name], data)
    assert [f for f, _ in ours.value.problems] == [f for f, _ in theirs.value.problems]
    assert ours.value.version_mismatch == theirs.value.version_mismatch
    if ours.value.version_mismatch:
        assert str(ours.value) == str(theirs.value)


def test_a_report_keeps_absent_and_null_apart() -> None:
    """The agent sends its report items as built: `message: null` clears, no `message` keeps."""
    assert plain.report_item({"cell_id": "c", "message": None}) == plain.CellReport(cell_id="c")
    assert isinstance(plain.report_item({"volume_removed": "v"}), plain.VolumeRemoved)
    assert isinstance(plain.report_item({"engine": {"state": "DOWN"}}), plain.EngineItem)


def test_the_plain_module_needs_no_pydantic() -> None:
    code = (
        "import sys\nfrom cellplane.wire import agent_plain\n"
        "assert not [m for m in sys.modules if m.startswith('pydantic')], 'pydantic loaded'\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
