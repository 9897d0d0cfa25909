"""`run -i`/`-t` and attach with stdin on the Docker endpoint, and Compose's names, without an
engine: the create body's OpenStdin/StdinOnce/Tty and names/aliases -> the cell's labels -> the
agent's container spec and engine body -> `inspect`; and the main-process attach from
`services.agent_proxy.open_attach` through a real `AgentEndpoint` on a loopback port to the fake
driver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from test_docker_mapping import body
from test_docker_views import NOW, cell

from cellplane.agent.endpoint import AgentEndpoint
from cellplane.agent.spec import container_spec
from cellplane.dockerapi import naming, views
from cellplane.dockerapi import resource_views as rv
from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.drivers.base import ContainerSpec
from cellplane.drivers.fake import FakeDriver
from cellplane.drivers.podman_bodies import compat_create_body
from cellplane.services import agent_proxy
from cellplane.wire import exec as wire

SECRET = "agent-secret"


def _assignment(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "cell_id": "cel-1",
        "name": "web",
        "project_id": "prj-1",
        "network": "cp-prj-1",
        "image": {"id": "img-1", "kind": "archive"},
        "cpu": 0.5,
        "memory_mb": 64,
        "labels": labels,
    }


@pytest.mark.parametrize(
    ("flags", "labels"),
    [
        # docker run -i: stdin attached, open, closed at the client's end of input
        (
            {"AttachStdin": True, "OpenStdin": True, "StdinOnce": True},
            {wire.STDIN_LABEL: "once"},
        ),
        # docker create -it / run -dit: open for later attaches, with a TTY
        ({"OpenStdin": True, "Tty": True}, {wire.STDIN_LABEL: "open", wire.TTY_LABEL: "true"}),
        ({"Tty": True}, {wire.TTY_LABEL: "true"}),
        ({}, {}),
    ],
)
def test_stdin_and_tty_become_labels_the_agent_turns_into_the_engine_body(
    flags: dict[str, Any], labels: dict[str, str]
) -> None:
    fields = cell_fields(None, body(**flags))
    assert fields["labels"] == labels
    spec = container_spec(_assignment(fields["labels"]), "hst-1", "busybox")
    engine = compat_create_body(spec)
    stdin = labels.get(wire.STDIN_LABEL)
    tty = wire.TTY_LABEL in labels
    assert (spec.stdin, spec.stdin_once, spec.tty) == (stdin is not None, stdin == "once", tty)
    if stdin or tty:
        assert (engine["OpenStdin"], engine["StdinOnce"], engine["Tty"]) == (
            stdin is not None,
            stdin == "once",
            tty,
        )
    else:  # a plain container's body is as before
        assert not {"OpenStdin", "StdinOnce", "Tty"} & set(engine)
    # the container's own labels never carry Cellplane's
    assert not [k for k in spec.labels if k.startswith("cellplane.docker")]
    config = views.inspect(cell(labels=fields["labels"]), "bridge")["Config"]
    assert (config["OpenStdin"], config["StdinOnce"], config["Tty"]) == (
        stdin is not None,
        stdin == "once",
        tty,
    )
    assert not [k for k in config["Labels"] if k.startswith("cellplane.")]


def test_a_non_boolean_flag_is_refused_naming_it() -> None:
    with pytest.raises(Refused) as err:
        cell_fields(None, body(OpenStdin="yes"))
    assert err.value.status == 400
    assert "OpenStdin must be true or false" in str(err.value)


def test_the_clients_console_size_sizes_the_tty_from_its_start() -> None:
    # docker run -it from a 101x33 terminal: ConsoleSize is [height, width]
    fields = cell_fields(
        None, body(Tty=True, OpenStdin=True, HostConfig={"ConsoleSize": [33, 101]})
    )
    assert fields["labels"][wire.TTY_SIZE_LABEL] == "101x33"
    spec = container_spec(_assignment(fields["labels"]), "hst-1", "busybox")
    assert (spec.tty, spec.tty_size) == (True, (101, 33))
    assert "cellplane.docker.tty-size" not in spec.labels
    # no terminal on the client's side ([0, 0]), or no TTY asked: nothing to size
    for flags in (
        {"Tty": True, "HostConfig": {"ConsoleSize": [0, 0]}},
        {"HostConfig": {"ConsoleSize": [33, 101]}},
    ):
        fields = cell_fields(None, body(**flags))
        assert wire.TTY_SIZE_LABEL not in fields["labels"]
        assert container_spec(_assignment(fields["labels"]), "hst-1", "busybox").tty_size is None


@pytest.mark.parametrize("size", [[33], [-1, 80], [33, "101"], [0, 80], [24, 10_001], "33x101"])
def test_a_console_size_that_is_no_size_is_refused_naming_it(size: Any) -> None:
    with pytest.raises(Refused) as err:
        cell_fields(None, body(Tty=True, HostConfig={"ConsoleSize": size}))
    assert err.value.status == 400
    assert "ConsoleSize must be [height, width]" in str(err.value)


@pytest.mark.parametrize(
    "label", ["", "101", "x33", "101x", "0x33", "101x33x2", "-1x33", "99999x1"]
)
def test_the_agent_starts_a_tty_unsized_when_the_size_label_is_no_size(label: str) -> None:
    labels = {wire.TTY_LABEL: "true", wire.TTY_SIZE_LABEL: label}
    spec = container_spec(_assignment(labels), "hst-1", "busybox")
    assert (spec.tty, spec.tty_size) == (True, None)


def test_a_size_without_a_tty_is_no_container_spec() -> None:
    with pytest.raises(ValueError, match="tty_size needs a TTY"):
        ContainerSpec(name="c", image="busybox", tty_size=(80, 24))


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver(images=["host"])


@pytest.fixture
def agent(driver: FakeDriver) -> Iterator[AgentEndpoint]:
    endpoint = AgentEndpoint(driver, SECRET)
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


async def _attach(agent: AgentEndpoint, cell_id: str, data: bytes) -> list[tuple[int, bytes]]:
    session = await agent_proxy.open_attach((agent.url, SECRET, cell_id), stdin=True, logs=True)
    try:
        await session.send(wire.STDIN, data)
        await session.send(wire.CLOSE, wire.close_stdin())
        return [frame async for frame in session.frames()]
    finally:
        await session.close()


def test_the_agent_attaches_the_main_process_with_its_stdin(
    driver: FakeDriver, agent: AgentEndpoint
) -> None:
    container = driver.create(ContainerSpec(name="cp-cel-1", image="host", stdin=True))
    driver.start(container)
    frames = asyncio.run(_attach(agent, "cel-1", b"hi\n"))
    assert frames[0] == (wire.STDOUT, b"hi\n")  # the fake's main process is `cat`
    assert frames[-1][0] == wire.STATUS
    assert driver.called("attach_open") == [("cp-cel-1", True, True)]
    assert driver.called("exec_open") == []  # no command was run


def test_an_attach_to_a_missing_container_is_refused_before_the_upgrade(
    agent: AgentEndpoint,
) -> None:
    with pytest.raises(agent_proxy.AgentRefused) as err:
        asyncio.run(_attach(agent, "cel-none", b""))
    assert err.value.agent_status == 404
    assert "attach failed on the host" in str(err.value)


def test_compose_names_are_cell_names_with_dashes_reported_back_as_given() -> None:
    net = {"composetest_default": {"Aliases": ["web"], "IPAMConfig": {}}}
    fields = cell_fields(
        "composetest_web_1",
        body(
            HostConfig={"NetworkMode": "composetest_default"},
            NetworkingConfig={"EndpointsConfig": net},
        ),
    )
    assert (fields["name"], fields["network"]) == ("composetest-web-1", "composetest-default")
    labels = fields["labels"]
    assert labels[naming.NAME_LABEL] == "composetest_web_1"
    assert labels[wire.ALIASES_LABEL] == "web"
    c = cell(name=fields["name"], labels=labels)
    view = views.inspect(c, "composetest-default")
    assert view["Name"] == "/composetest_web_1"
    assert views.summary(c, NOW)["Names"] == ["/composetest_web_1"]
    short_id = views.docker_id(c["id"])[:12]
    # Compose finds its network under the name it gave, with the short id among the aliases
    assert view["NetworkSettings"]["Networks"]["composetest_default"]["Aliases"] == [
        "composetest-web-1",
        short_id,
        "web",
    ]
    # ...and the agent gives the container exactly those names on the network
    assignment = {**_assignment(labels), "cell_id": c["id"], "name": "composetest-web-1"}
    assert container_spec(assignment, "hst-1", "busybox").aliases == [
        "composetest-web-1",
        short_id,
        "web",
    ]
    # a plain container keeps its one name
    assert container_spec(_assignment({}), "hst-1", "busybox").aliases == ["web"]
    assert naming.same_name("composetest_web_1", "composetest-web-1")
    assert not naming.same_name("composetest-web-1", "composetest-web-2")


@pytest.mark.parametrize(
    ("name", "words"),
    [("Web", "container name 'Web'"), ("a.b", "container name 'a.b'")],
)
def test_names_that_are_not_dns_labels_even_with_dashes_are_refused(name: str, words: str) -> None:
    with pytest.raises(Refused) as err:
        cell_fields(name, body())
    assert err.value.status == 400
    assert words in str(err.value)


def test_networks_accept_labels_of_strings() -> None:
    compose = {"com.docker.compose.network": "default", "com.docker.compose.project": "p"}
    assert rv.check_network_create({"Name": "p_default", "Labels": compose}) == "p-default"
    assert rv.check_network_create({"Name": "p_default", "Labels": {"team": "blue"}})
    with pytest.raises(Refused, match="a label's value must be a string"):
        rv.check_network_create({"Name": "p_default", "Labels": {"team": ["blue"]}})


def test_inspect_names_the_engines_log_driver_which_compose_needs_to_show_logs() -> None:
    assert views.inspect(cell(), "bridge")["HostConfig"]["LogConfig"]["Type"] == "k8s-file"
