"""Hypothesis over every route of the Docker-compatible endpoint (issue 14), and a regression test
for each thing it found.

`test_every_route_of_the_endpoint_survives_fuzzing` is the suite's bounded run: the endpoint of a
fuzz server's project with its real handlers on a free port, no agent behind its host and no
engine (`cellplane.testing.fuzz_docker`). A longer run: `bench/fuzz.py --target docker`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cellplane.dockerapi.mapping import loads
from cellplane.dockerapi.server import make_app
from cellplane.testing.fuzz import FuzzServer
from cellplane.testing.fuzz_docker import DockerTarget, fuzz_docker, operations

# A bounded run, the same on any machine: rounds, not seconds.
ROUNDS = 2
DEEP = "[" * 5000 + "]" * 5000


@pytest.fixture(scope="module")
def target() -> Iterator[DockerTarget]:
    with FuzzServer() as server, DockerTarget(server) as t:
        yield t


def _post(t: DockerTarget, path: str, **kw: Any) -> httpx.Response:
    headers = {**t.server.headers["project-member"], **kw.pop("headers", {})}
    return httpx.post(t.url + path, headers=headers, timeout=30, **kw)


def _docker_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    message = r.json()["message"]
    assert isinstance(message, str)
    return message


def test_every_route_of_the_endpoint_survives_fuzzing(target: DockerTarget) -> None:
    stats = fuzz_docker(target, 0, seed=14, rounds=ROUNDS)
    summary = stats.summary()
    assert summary["failures"] == {}, "\n\n".join(f"{k}\n{v}" for k, v in stats.failures.items())
    assert stats.server_errors == stats.bad_error_bodies == stats.state_changes == 0
    # Every route of the endpoint's router was sent, and answered past authentication and
    # lookup: a route added to the endpoint is fuzzed without anyone listing it.
    assert summary["not_sent"] == []
    assert summary["not_covered"] == []
    assert stats.requests > 300


def test_the_operations_are_the_routers(target: DockerTarget) -> None:
    """The fuzzer's list of operations is read from the app, so a new route is in it."""
    assert target.app is not None
    ops = operations(target.app)
    assert ("POST", "/containers/create") in ops and ("GET", "/_ping") in ops
    app = make_app(target.app[next(iter(target.app))])  # type: ignore[index]
    app.router.add_route("GET", "/brand-new", lambda _r: None)  # type: ignore[arg-type,return-value]
    assert ("GET", "/brand-new") in operations(app)


def test_a_refused_change_leaves_the_digest_and_a_made_one_moves_it(target: DockerTarget) -> None:
    before = target.server.digest()
    r = _post(target, "/volumes/create", json={"Driver": "nfs"})
    _docker_error(r, 400)
    assert target.server.digest() == before
    r = _post(target, "/volumes/create", json={"Name": "digest-probe"})
    assert r.status_code == 201, r.text
    assert target.server.digest() != before


# --- what the fuzzer found (each failed before its fix) ----------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/containers/create", "/volumes/create", "/networks/create", "/networks/bridge/connect"],
)
def test_a_body_nested_too_deeply_is_a_dockers_400(target: DockerTarget, path: str) -> None:
    """It was a 500: `json.loads` raises RecursionError (not ValueError) past ~1000 levels."""
    before = target.server.digest()
    r = _post(target, path, content=DEEP, headers={"Content-Type": "application/json"})
    assert "not JSON" in _docker_error(r, 400)
    assert target.server.digest() == before


def test_a_filter_nested_too_deeply_is_a_dockers_400(target: DockerTarget) -> None:
    """A query string stays under aiohttp's 8 KiB request line: 1,200 levels are enough."""
    headers = target.server.headers["project-viewer"]
    deep = "[" * 1200 + "]" * 1200
    for path in ("/containers/json", "/images/json", "/volumes", "/networks", "/events"):
        r = httpx.get(target.url + path, params={"filters": deep}, headers=headers, timeout=30)
        assert "filters" in _docker_error(r, 400), path


def test_a_registry_auth_nested_too_deeply_is_a_dockers_400(target: DockerTarget) -> None:
    import base64

    deep = "[" * 1200 + "]" * 1200  # a header stays under aiohttp's 8 KiB line limit
    auth = base64.urlsafe_b64encode(deep.encode()).decode()
    r = _post(
        target,
        "/images/create",
        params={"fromImage": "registry.fuzz.invalid/team/app", "tag": "1"},
        headers={**target.server.headers["system-admin"], "X-Registry-Auth": auth},
    )
    assert "X-Registry-Auth" in _docker_error(r, 400)


def test_a_body_under_an_unknown_charset_is_read_as_utf8(target: DockerTarget) -> None:
    """aiohttp's `request.json()` decodes with the Content-Type's charset: an unknown one raised
    LookupError (a 500). dockerd reads JSON bodies as UTF-8 whatever the header says."""
    r = _post(
        target,
        "/volumes/create",
        content=b'{"Driver": "nfs"}',
        headers={"Content-Type": "application/json; charset=no-such-charset"},
    )
    assert "nfs" in _docker_error(r, 400)


def test_loads_turns_recursion_into_value_error() -> None:
    assert loads('{"a": [1]}') == {"a": [1]}
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(DEEP)
    with pytest.raises(ValueError):
        loads(b"\xff")


@pytest.mark.parametrize(
    "body",
    [
        {"Image": "host", "NetworkingConfig": [1]},
        {"Image": "host", "NetworkingConfig": {"EndpointsConfig": {"x": []}}},
        {"Image": "host", "HostConfig": {"NetworkMode": 5}},
        {"Image": "host", "HostConfig": {"RestartPolicy": {"MaximumRetryCount": "x"}}},
        {"Image": "host", "HostConfig": {"PortBindings": {"80/tcp": "x"}}},
        {"Image": "host", "HostConfig": {"Mounts": [1]}},
        {"Image": "host", "Labels": ["a=b"]},
    ],
)
def test_a_create_body_field_of_the_wrong_type_is_a_dockers_400(
    target: DockerTarget, body: dict[str, Any]
) -> None:
    """The mapping read fields as the types Docker documents: another type was a 500
    (`'list' object has no attribute 'get'`, `int('x')`)."""
    before = target.server.digest()
    r = _post(target, "/containers/create", json=body)
    assert r.status_code == 400, r.text
    _docker_error(r, 400)
    assert target.server.digest() == before


@pytest.mark.parametrize("route", ["stats?stream=0", "top", "changes"])
def test_a_running_containers_unreachable_host_is_a_409_not_a_500(
    target: DockerTarget, route: str
) -> None:
    """`stats`, `top`, `diff` (and network connect, below) answered 500 when the cell's host
    agent did not answer; the REST API and the endpoint's logs and exec answer 409 for it."""
    headers = target.server.headers["project-member"]
    r = httpx.get(f"{target.url}/containers/fuzz-running/{route}", headers=headers, timeout=30)
    assert "unreachable" in _docker_error(r, 409)


def test_connecting_a_container_whose_host_is_unreachable_is_a_409(target: DockerTarget) -> None:
    r = _post(target, "/networks/create", json={"Name": "fuzz-unreachable"})
    assert r.status_code == 201, r.text
    r = _post(target, "/networks/fuzz-unreachable/connect", json={"Container": "fuzz-running"})
    assert "left as it was" in _docker_error(r, 409)


def test_an_agent_failure_is_the_apis_409() -> None:
    from cellplane.dockerapi.extras import _refusal
    from cellplane.services.agent_proxy import AgentRefused

    cell = {"name": "web"}
    assert _refusal(AgentRefused("boom", 500, "boom"), cell, "/x").status == 409
    assert _refusal(AgentRefused("no", 501, "no"), cell, "/x").status == 501
    assert _refusal(AgentRefused("gone", 404, "path"), cell, "/x").status == 404
