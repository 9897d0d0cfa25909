"""The server's loops run in the app's lifespan only when the server entry installs them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from cellplane_platform_support import Platform
from fastapi.testclient import TestClient

from cellplane.api.app import create_app
from cellplane.controller import runtime


@pytest.mark.parametrize("run_controllers", [True, False])
def test_installed_loops_live_as_long_as_the_lifespan(
    plat: Platform, monkeypatch: pytest.MonkeyPatch, run_controllers: bool
) -> None:
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def loops(svc: object) -> AsyncIterator[None]:
        seen.append("start")
        yield
        seen.append("stop")

    monkeypatch.setattr(runtime, "background_loops", loops)
    app = create_app(plat.svc, run_controllers=run_controllers)
    assert app.state.background == []  # the factory starts nothing of its own
    runtime.install(app.state.background, plat.svc)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert seen == (["start"] if run_controllers else [])
    assert seen == (["start", "stop"] if run_controllers else [])


def test_the_real_loops_start_and_stop(plat: Platform) -> None:
    app = create_app(plat.svc)
    runtime.install(app.state.background, plat.svc)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
