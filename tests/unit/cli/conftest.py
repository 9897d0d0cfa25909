"""Fixtures for the CLI tests: the in-memory API of tests/unit/client, and a runner.

`cli(...)` runs the root app with `output.client_factory` pointed at the fake,
so every command goes through the real SDK and a MockTransport.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _load_fake_api() -> None:
    name = "cellplane_fake_api"
    if name in sys.modules:
        return
    path = Path(__file__).parents[1] / "client" / "fake_api.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_fake_api()

from cellplane_fake_api import FakeApi  # noqa: E402
from typer.testing import CliRunner, Result  # noqa: E402

from cellplane.cli import output  # noqa: E402
from cellplane.cli.main import app  # noqa: E402
from cellplane.client import Client  # noqa: E402

Invoke = Callable[..., Result]


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def cli(fake: FakeApi, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    token = fake.token  # fixed here: a test may rotate the server's token

    def factory() -> Client:
        return Client(
            "http://cellplane.test", token, transport=fake.transport(), retries=1, backoff=0
        )

    monkeypatch.setattr(output, "client_factory", factory)
    monkeypatch.delenv("CELLPLANE_PROJECT", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return invoke
