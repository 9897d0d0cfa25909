"""Fixtures for the SDK tests: an in-memory API and a client bound to it.

fake_api.py is loaded by path and registered as `cellplane_fake_api`, so the
tests here and in tests/unit/cli import it the same way whatever pytest's
import mode.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _load_fake_api() -> None:
    name = "cellplane_fake_api"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_api.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_fake_api()

from cellplane_fake_api import FakeApi  # noqa: E402

from cellplane.client import Client  # noqa: E402


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(fake: FakeApi) -> Iterator[Client]:
    with Client(
        "http://cellplane.test", fake.token, transport=fake.transport(), retries=3, backoff=0.0
    ) as c:
        yield c
