"""The package's public surface: every exported name exists and modules declare __all__."""

from __future__ import annotations

import importlib

import pytest

import cellplane.clusters as clusters

MODULES = ["catalog", "errors", "jsonc", "planner", "roles", "spec"]


@pytest.mark.parametrize("module", MODULES)
def test_module_all_names_exist(module: str) -> None:
    mod = importlib.import_module(f"cellplane.clusters.{module}")
    assert mod.__doc__
    assert mod.__all__
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def test_package_reexports_the_api() -> None:
    missing = [name for name in clusters.__all__ if not hasattr(clusters, name)]
    assert missing == []
    for name in ("Catalog", "plan_cluster", "render_role", "parse_spec", "export_spec"):
        assert name in clusters.__all__
