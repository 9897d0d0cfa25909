"""A host path mount in agent/v1 (`MountAssignment.host_path`, `host_root`): read the same by the
server's models and the agent's dataclasses; a named volume's mount, as older servers send it,
still reads as before."""

from __future__ import annotations

from typing import Any

import pytest
from test_wire_agent import CELL, V1

from cellplane.wire import agent as server_wire
from cellplane.wire import agent_plain as plain

BIND = {"path": "/data", "read_only": True, "host_path": "/srv/shared/x", "host_root": "/srv"}
OLD_VOLUME = {"volume_id": "vol-1", "engine_name": "cp-vol-1", "path": "/d", "read_only": True}


def _both(mounts: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    data = {**V1, "revision": 1, "cells": [{**CELL, "mounts": mounts}]}
    ours = plain.dump(plain.parse(plain.Assignments, data))["cells"][0]["mounts"]
    theirs = server_wire.parse(server_wire.Assignments, data).model_dump(mode="json")
    return ours, theirs["cells"][0]["mounts"]


def test_a_host_path_mount_reads_the_same_on_both_sides() -> None:
    ours, theirs = _both([BIND])
    assert ours == theirs == [{**BIND, "volume_id": "", "engine_name": ""}]


def test_an_older_servers_volume_mount_reads_as_before() -> None:
    ours, theirs = _both([OLD_VOLUME])
    assert ours == theirs == [{**OLD_VOLUME, "host_path": None, "host_root": None}]
    mount = plain.parse(plain.MountAssignment, OLD_VOLUME)
    assert (mount.volume_id, mount.engine_name, mount.host_path) == ("vol-1", "cp-vol-1", None)


@pytest.mark.parametrize("bad", [{"host_path": 5}, {"path": None}, {"host_root": ["/"]}])
def test_a_malformed_mount_is_refused_by_both(bad: dict[str, Any]) -> None:
    data = {**V1, "revision": 1, "cells": [{**CELL, "mounts": [{**BIND, **bad}]}]}
    with pytest.raises(plain.ProtocolError):
        plain.parse(plain.Assignments, data)
    with pytest.raises(Exception, match="mounts"):
        server_wire.parse(server_wire.Assignments, data)
