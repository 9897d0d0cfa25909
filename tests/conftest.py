"""Suite-wide rules: integration tests need real podman; in CI they must run, never skip."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shutil.which("podman") and shutil.which("runc"):
        return
    needs_engine = [i for i in items if i.get_closest_marker("integration")]
    if not needs_engine:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError(
            "integration tests need podman and runc; CI must install them (make deps-test)"
        )
    skip = pytest.mark.skip(reason="podman/runc not installed (run `make deps-test`)")
    for item in needs_engine:
        item.add_marker(skip)
