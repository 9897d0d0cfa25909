"""`cellplane service ...` against a small in-memory API of the service routes: flags into the
template, waiting on the task, exit codes, and what is sent (nothing, on a usage error)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from cellplane.cli import output
from cellplane.cli.main import app
from cellplane.client import Client

Invoke = Callable[..., Result]
BASE = "/v1/projects/default/services"


class ServiceApi:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.task_state = "COMPLETED"
        self.template: dict[str, Any] = {"image": "busybox", "cpu": 0.05, "memory_mb": 16}

    def task(self, kind: str) -> dict[str, Any]:
        return {
            "id": "tsk-1",
            "kind": kind,
            "state": self.task_state,
            "entity": {"kind": "service", "id": "svc-1"},
            "progress": 100,
            "steps": [],
            "error": "cannot create a cell" if self.task_state == "ERROR" else None,
        }

    def view(self) -> dict[str, Any]:
        return {
            "id": "svc-1",
            "name": "web",
            "state": "READY",
            "instances": 2,
            "ready": 2,
            "current": 2,
            "revision": 1,
            "template": self.template,
            "update": {"max_unavailable": 1, "max_surge": 1},
            "message": None,
            "task": None,
            "cells": [],
            "created_at": "2026-12-04T00:00:00+00:00",
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.sent.append((request.method, path, body))
        kinds = {
            ("POST", BASE): "CREATE_SERVICE",
            ("POST", f"{BASE}/web/scale"): "SCALE_SERVICE",
            ("POST", f"{BASE}/web/update"): "UPDATE_SERVICE",
            ("DELETE", f"{BASE}/web"): "DELETE_SERVICE",
        }
        if (request.method, path) in kinds:
            return httpx.Response(202, json=self.task(kinds[(request.method, path)]))
        if path == f"{BASE}/web":
            return httpx.Response(200, json=self.view())
        if path == BASE:
            return httpx.Response(200, json={"items": [self.view()], "next_cursor": None})
        if path == "/v1/tasks/tsk-1":
            return httpx.Response(200, json=self.task("X"))
        return httpx.Response(404, json={"title": "Not found", "status": 404})

    def changes(self) -> list[tuple[str, str, Any]]:
        return [s for s in self.sent if s[0] != "GET"]


@pytest.fixture
def api() -> ServiceApi:
    return ServiceApi()


@pytest.fixture
def cli(api: ServiceApi, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    def factory() -> Client:
        return Client(
            "http://cellplane.test", "t", transport=httpx.MockTransport(api.handle), retries=1
        )

    monkeypatch.setattr(output, "client_factory", factory)
    monkeypatch.delenv("CELLPLANE_PROJECT", raising=False)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_create_sends_the_template_count_and_bounds_and_waits(cli: Invoke, api: ServiceApi) -> None:
    result = cli(
        "service", "create", "web", "--image", "busybox", "-n", "3",
        "--cpu", "0.05", "--memory", "16M", "-e", "A=1", "--restart", "always",
        "--max-unavailable", "0", "--max-surge", "2", "--", "sleep", "600",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.changes() == [
        (
            "POST",
            BASE,
            {
                "name": "web",
                "template": {
                    "image": "busybox",
                    "command": ["sleep", "600"],
                    "cpu": 0.05,
                    "memory_mb": 16,
                    "env": {"A": "1"},
                    "restart": {"policy": "always", "max_retries": None},
                },
                "instances": 3,
                "update": {"max_unavailable": 0, "max_surge": 2},
            },
        )
    ]
    assert "service web ready: 2/2 ready, revision 1" in result.stdout


def test_update_changes_only_the_flags_given_on_the_current_template(
    cli: Invoke, api: ServiceApi
) -> None:
    result = cli("service", "update", "web", "-e", "V=2", "-d")
    assert result.exit_code == 0, result.output
    assert api.changes() == [
        ("POST", f"{BASE}/web/update", {"template": {**api.template, "env": {"V": "2"}}})
    ]
    assert "task tsk-1" in result.stdout


def test_isolation_sets_the_class_of_every_cell_on_create_and_update(
    cli: Invoke, api: ServiceApi
) -> None:
    result = cli("service", "create", "gv", "-i", "busybox", "--isolation", "sandbox", "-d")
    assert result.exit_code == 0, result.output
    result = cli("service", "update", "web", "--isolation", "sandbox", "-d")
    assert result.exit_code == 0, result.output
    (create, change) = api.changes()
    assert create[2]["template"] == {"image": "busybox", "isolation": "sandbox"}
    assert change[2] == {"template": {**api.template, "isolation": "sandbox"}}


def test_a_failed_task_exits_1_and_usage_errors_exit_2_sending_nothing(
    cli: Invoke, api: ServiceApi
) -> None:
    api.task_state = "ERROR"
    result = cli("service", "scale", "web", "4")
    assert result.exit_code == 1, result.output
    assert "cannot create a cell" in result.output
    api.sent.clear()
    for args in (
        ("service", "create", "web", "--image", "busybox", "--memory", "lots"),
        ("service", "create", "web", "-n", "2"),
        ("service", "scale", "web", "-1"),
        ("service", "create", "web", "--image", "busybox", "--isolation", "vm"),
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
    assert api.sent == []


def test_ls_json_quiet_and_rm(cli: Invoke, api: ServiceApi) -> None:
    result = cli("service", "ls", "-o", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["name"] == "web"
    assert cli("service", "ls", "-q").stdout.split() == ["svc-1"]
    result = cli("service", "rm", "web")
    assert result.exit_code == 0 and "service web deleted" in result.stdout
    assert ("DELETE", f"{BASE}/web", None) in api.sent
