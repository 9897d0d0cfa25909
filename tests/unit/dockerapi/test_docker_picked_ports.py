"""`-p PORT`: the host port the engine picks is reported by the agent (`agent.spec.picked_ports`),
kept with the cell's port (`services.hosts.with_picked_ports`, as `picked_port`) and shown by
`inspect`, `ps` and `port` while the container runs. Pure."""

from __future__ import annotations

from typing import Any

from test_docker_stdin import _assignment
from test_docker_views import NOW, cell

from cellplane.agent.spec import picked_ports
from cellplane.dockerapi import views
from cellplane.drivers.base import ContainerInfo, PortSpec
from cellplane.services.hosts import with_picked_ports
from cellplane.wire import agent as wire
from cellplane.wire import agent_plain

ASKED = [
    {"container_port": 80, "host_port": None, "protocol": "tcp"},
    {"container_port": 53, "host_port": None, "protocol": "udp"},
    {"container_port": 443, "host_port": 8443, "protocol": "tcp"},
]


def _info(*ports: PortSpec) -> ContainerInfo:
    return ContainerInfo(id="c1", name="cp-cel-1", labels={}, state="running", running=True,
                         ports=list(ports))  # fmt: skip


def test_the_agent_reports_only_the_ports_the_engine_picked() -> None:
    c = agent_plain.parse(agent_plain.CellAssignment, {**_assignment({}), "ports": ASKED})
    info = _info(
        PortSpec(80, 40001, "tcp"),
        PortSpec(80, 40001, "tcp"),  # the engine lists IPv4 and IPv6 bindings apart
        PortSpec(53, 40002, "udp"),
        PortSpec(443, 8443, "tcp"),  # asked for: not reported
        PortSpec(53, 40003, "tcp"),  # not a port of the cell's
    )
    assert picked_ports(c, info) == [
        {"container_port": 53, "host_port": 40002, "protocol": "udp"},
        {"container_port": 80, "host_port": 40001, "protocol": "tcp"},
    ]
    assert picked_ports(c, _info(PortSpec(80, None, "tcp"))) == []  # not bound (yet)


def test_the_server_keeps_the_picked_port_beside_the_asked_for_one() -> None:
    reported = [
        wire.PortAssignment(container_port=80, host_port=40001, protocol="tcp"),
        wire.PortAssignment(container_port=443, host_port=9999, protocol="tcp"),
    ]
    kept = with_picked_ports([*ASKED, "not a port"], reported)
    assert kept == [
        {"container_port": 80, "host_port": None, "protocol": "tcp", "picked_port": 40001},
        ASKED[1],
        ASKED[2],  # it names its host port: never replaced
        "not a port",
    ]
    assert ASKED[0] == {"container_port": 80, "host_port": None, "protocol": "tcp"}  # a copy


def _published(c: dict[str, Any]) -> tuple[Any, Any, Any]:
    shown = views.inspect(c, "bridge")
    listed = views.summary(c, NOW)["Ports"]
    return (
        shown["NetworkSettings"]["Ports"],
        shown["HostConfig"]["PortBindings"],
        [p.get("PublicPort") for p in listed],
    )


def test_inspect_and_ps_show_the_picked_port_while_the_container_runs() -> None:
    ports = [{"container_port": 80, "host_port": None, "protocol": "tcp", "picked_port": 40001}]
    running, bindings, listed = _published(cell(ports=ports))
    assert running == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40001"}]}
    assert bindings == {"80/tcp": [{"HostIp": "", "HostPort": ""}]}  # what was asked
    assert listed == [40001]
    stopped, _, listed = _published(cell(ports=ports, state="EXITED", desired_state="STOPPED"))
    assert stopped == {"80/tcp": None} and listed == [None]
