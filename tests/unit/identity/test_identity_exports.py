"""The identity package's public surface is explicit and importable."""

from __future__ import annotations

import importlib

import pytest

import cellplane.identity

MODULES = ["keys", "tokens", "passwords", "ca", "certs"]  # files: now cellplane.files


@pytest.mark.parametrize("name", MODULES)
def test_module_all_names_exist_and_modules_are_documented(name: str) -> None:
    module = importlib.import_module(f"cellplane.identity.{name}")
    assert module.__doc__ and len(module.__doc__) > 80
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_package_reexports_resolve_to_their_modules() -> None:
    for name in cellplane.identity.__all__:
        obj = getattr(cellplane.identity, name)
        assert (
            obj.__module__.startswith(("cellplane.identity.", "cellplane.files"))
            or name == "Profile"
        ), name
