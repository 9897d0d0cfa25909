"""Fixtures for the cluster executor's unit tests (the same catalog as tests/unit/clusters), and
`ex`: the executor against the in-process server with a fake agent (executor_support.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellplane.clusters import Catalog, default_catalog_paths
from cellplane.services import clusters as clusters_mod


def _load_support() -> None:
    name = "cellplane_executor_support"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).parent / "executor_support.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_support()

from cellplane_executor_support import Executor, FakeAgent  # noqa: E402
from cellplane_platform_support import Platform  # noqa: E402


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The shipped catalog, without operator folders from the environment."""
    return Catalog.load(default_catalog_paths(environ={}))


@pytest.fixture
def agent(plat: Platform) -> Iterator[FakeAgent]:
    with FakeAgent(plat) as a:
        yield a
    assert a.errors == []


@pytest.fixture
def ex(plat: Platform, agent: FakeAgent, monkeypatch: pytest.MonkeyPatch) -> Iterator[Executor]:
    """The executor (readiness probes pass at once), with the fake agent running."""
    monkeypatch.setattr(clusters_mod, "host_has", lambda path: True)
    executor = Executor(plat.svc, clusters_mod.load_catalog())
    yield executor
    executor.close()
