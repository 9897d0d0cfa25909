"""Fixtures shared by the unit tests of the API, services and controller.

A seeded in-process server with one registered host (see api/platform_support.py). The support
module is loaded by path and registered as `cellplane_platform_support`, so tests import it the
same way whatever pytest's import mode.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _load_support(name: str, filename: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "api" / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_support("cellplane_platform_support", "platform_support.py")
_load_support("cellplane_tenancy_support", "tenancy_support.py")

from cellplane_platform_support import Platform, Template, make_template, platform  # noqa: E402


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return make_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def plat(tmp_path: Path, template: Template) -> Iterator[Platform]:
    with platform(tmp_path, template) as p:
        yield p


@pytest.fixture
def bare(tmp_path: Path, template: Template) -> Iterator[Platform]:
    """The same server with no host registered."""
    with platform(tmp_path, template, with_host=False) as p:
        yield p


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docker-archive of busybox tagged busybox:latest (built once per session)."""
    from cellplane.testing.busybox import build_busybox_archive

    return build_busybox_archive(tmp_path_factory.mktemp("busybox"))
