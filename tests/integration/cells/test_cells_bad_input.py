"""Bad requests answer RFC 9457 problem documents and change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cellplane.client import Client
from cellplane.testing.harness import Deployment

from .conftest import IMAGE, SLEEP, SMALL, Cells, assert_problem, unique

CELLS = "/v1/projects/default/cells"


def _snapshot(client: Client) -> list[tuple[str, str, str]]:
    return sorted((c["id"], c["name"], c["desired_state"]) for c in client.iter_cells("default"))


@pytest.fixture
def unchanged(client: Client, cells: Cells) -> Iterator[Cells]:
    """One existing cell (for the duplicate name); the cell list must be identical afterwards."""
    cells.run("existing")
    before = _snapshot(client)
    assert before, "the snapshot must not be empty"
    yield cells
    assert _snapshot(client) == before


def _create(api: httpx.Client, **overrides: Any) -> httpx.Response:
    body = {"name": unique("bad"), "image": IMAGE, "command": SLEEP, **SMALL, **overrides}
    return api.post(CELLS, json={k: v for k, v in body.items() if v is not None})


def _fields(problem: dict[str, Any]) -> list[str]:
    assert isinstance(problem.get("errors"), list) and problem["errors"], problem
    for e in problem["errors"]:
        assert e.get("message"), problem
    return [e["field"] for e in problem["errors"]]


@pytest.mark.integration
def test_unknown_image(api: httpx.Client, unchanged: Cells) -> None:
    p = assert_problem(_create(api, image="no-such-image"), 422, "validation")
    assert _fields(p) == ["image"], p
    assert "no-such-image" in p["detail"], p


@pytest.mark.integration
def test_unknown_flavor(api: httpx.Client, unchanged: Cells) -> None:
    p = assert_problem(
        _create(api, cpu=None, memory_mb=None, flavor="HUGE-NOPE"), 422, "validation"
    )
    assert _fields(p) == ["flavor"], p
    assert "HUGE-NOPE" in p["detail"], p


@pytest.mark.integration
def test_malformed_json(api: httpx.Client, unchanged: Cells) -> None:
    resp = api.post(
        CELLS,
        content=b'{"name": "x", "image": ',
        headers={"Content-Type": "application/json"},
    )
    p = assert_problem(resp, 400, "malformed")
    assert p["detail"], p


@pytest.mark.integration
def test_name_not_a_dns_label(api: httpx.Client, unchanged: Cells) -> None:
    for bad in ("Not_A_Label", "-dash", "a" * 64, "dot.ted"):
        p = assert_problem(_create(api, name=bad), 422, "validation")
        assert _fields(p) == ["name"], (bad, p)


@pytest.mark.integration
def test_duplicate_name(api: httpx.Client, client: Client, unchanged: Cells) -> None:
    [existing] = [client.get_cell(i) for i in unchanged.created]
    p = assert_problem(_create(api, name=existing["name"]), 409, "conflict")
    assert existing["name"] in p["detail"], p


@pytest.mark.integration
def test_cell_bigger_than_any_host(api: httpx.Client, unchanged: Cells) -> None:
    """The issue's example: 1,000,000 MB (1 TB, more than this machine has) is refused as insufficient capacity, not as invalid."""
    p = assert_problem(_create(api, memory_mb=1_000_000), 409, "insufficient-capacity")
    assert "needs" in p["detail"] and "MB" in p["detail"], p


@pytest.mark.integration
def test_cell_bigger_than_the_host_within_schema_limits(
    api: httpx.Client, client: Client, deployment: Deployment, unchanged: Cells
) -> None:
    [host] = [h for h in client.list_hosts()["items"] if h["name"] == deployment.agent_name]
    memory = host["capacity"]["memory_mb"] + 1
    p = assert_problem(_create(api, memory_mb=memory), 409, "insufficient-capacity")
    assert "needs" in p["detail"] and "MB" in p["detail"], p
    assert str(memory) in p["detail"], p


@pytest.mark.integration
@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["no-token", "wrong-token"])
def test_unauthenticated(deployment: Deployment, unchanged: Cells, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=deployment.url, headers=headers, timeout=30) as anon:
        body = {"name": unique("anon"), "image": IMAGE, "command": SLEEP, **SMALL}
        assert_problem(anon.post(CELLS, content=json.dumps(body)), 401, "unauthorized")
        assert_problem(anon.get(CELLS), 401, "unauthorized")
        assert_problem(anon.get(f"/v1/cells/{unchanged.created[0]}"), 401, "unauthorized")
