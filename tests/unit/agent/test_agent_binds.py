"""A cell's host path mounts on its host: mounted by their real path when they exist under the
directory that admitted them; otherwise the cell fails naming the path, no container is made and
nothing is created on the host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agent_support import ENGINE_REF, HOST_ID, assignment

from cellplane.agent.prepare import checked_binds
from cellplane.agent.runner import Agent
from cellplane.agent.spec import container_spec
from cellplane.drivers.base import MountSpec
from cellplane.drivers.errors import PermanentDriverError
from cellplane.drivers.fake import FakeDriver
from cellplane.wire import agent_plain as wire

AgentFactory = Callable[[], Agent]
RunPass = Callable[..., None]


@pytest.fixture
def image_archive(driver: FakeDriver, tmp_path: Path) -> None:
    driver.archives[tmp_path / "images" / "img-1.tar"] = [ENGINE_REF]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "allowed"
    (r / "site").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (r / "escape").symlink_to(tmp_path / "secret")
    (r / "alias").symlink_to(r / "site")
    return r


def _bind(path: Path | str, root: Path | None, target: str = "/srv", ro: bool = False) -> Any:
    return {
        "path": target,
        "read_only": ro,
        "host_path": str(path),
        "host_root": None if root is None else str(root),
    }


def _cell(*mounts: dict[str, Any]) -> wire.CellAssignment:
    return wire.parse(wire.CellAssignment, assignment(mounts=list(mounts)))


def test_the_spec_mounts_the_real_path_of_each_host_path(root: Path) -> None:
    cell = _cell(
        _bind(root / "alias", root, "/srv", ro=True),
        {"volume_id": "vol-1", "engine_name": "cp-vol-1", "path": "/db"},
    )
    binds = checked_binds(cell)
    assert binds == {str(root / "alias"): str(root / "site")}
    spec = container_spec(cell, HOST_ID, ENGINE_REF, binds=binds)
    assert spec.mounts == [
        MountSpec("", "/srv", True, host_path=str(root / "site")),
        MountSpec("cp-vol-1", "/db", False),
    ]


def test_an_unchecked_host_path_never_reaches_a_spec(root: Path) -> None:
    with pytest.raises(ValueError, match="not checked"):
        container_spec(_cell(_bind(root / "site", root)), HOST_ID, ENGINE_REF)


@pytest.mark.parametrize(
    ("where", "with_root", "words"),
    [
        ("escape", True, "outside the allowed directory"),
        ("missing", True, "does not exist on this host"),
        ("site", False, "CELLPLANE_ALLOWED_HOST_PATHS"),
    ],
)
def test_a_bad_host_path_is_a_permanent_error_naming_it(
    root: Path, where: str, with_root: bool, words: str
) -> None:
    with pytest.raises(PermanentDriverError, match=words) as err:
        checked_binds(_cell(_bind(root / where, root if with_root else None)))
    assert str(root / where) in str(err.value)


@pytest.mark.usefixtures("image_archive", "clock")
def test_the_agent_runs_the_cell_with_its_host_path(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, root: Path
) -> None:
    agent = agent_factory()
    view = {"revision": 3, "full": True, "cells": [assignment(mounts=[_bind(root, root)])]}
    agent._apply_assignments(view)
    run_pass(agent)
    box = driver.by_name("cp-cel-1")
    assert box.state == "running"
    assert box.spec.mounts == [MountSpec("", "/srv", False, host_path=str(root))]
    assert server.last("cel-1")["state"] == "RUNNING"


@pytest.mark.usefixtures("image_archive", "clock")
def test_the_cell_fails_naming_a_missing_path_and_nothing_is_created(
    agent_factory: AgentFactory, driver: FakeDriver, server: Any, run_pass: RunPass, root: Path
) -> None:
    agent = agent_factory()
    missing = root / "not-here"
    view = {"revision": 3, "full": True, "cells": [assignment(mounts=[_bind(missing, root)])]}
    agent._apply_assignments(view)
    run_pass(agent)
    assert driver.called("create") == [] and driver.containers == {}
    last = server.last("cel-1")
    assert last["state"] == "FAILED"
    assert str(missing) in last["message"] and "does not exist" in last["message"]
    assert not missing.exists()
