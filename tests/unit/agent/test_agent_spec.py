"""`container_spec`: the pure translation of a cell assignment into an engine container."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.agent.runner import container_name, container_spec
from cellplane.agent.spec import network_spec
from cellplane.drivers.base import MountSpec, NetworkSpec, PortSpec
from cellplane.wire import agent_plain as wire


def assignment(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cell_id": "cel-1",
        "name": "web",
        "project_id": "prj-1",
        "network": "cp-prj-1",
        "image": {"id": "img-1", "kind": "archive", "engine_ref": "sha256:abc", "sha256": "x"},
        "cpu": 0.5,
        "memory_mb": 256,
        "command": ["httpd", "-f"],
        "env": {"A": "1"},
        "labels": {"app": "web"},
        "ports": [],
        "mounts": [],
        "restart": {"policy": "never", "max_retries": None},
        "stop_timeout": 10.0,
        "desired_state": "RUNNING",
        "restarts": 0,
        "restart_requested_at": None,
    }
    base.update(over)
    return base


def test_archive_image_spec() -> None:
    spec = container_spec(assignment(), "hst-1", "sha256:abc")
    assert spec.name == container_name("cel-1") == "cp-cel-1"
    assert spec.image == "sha256:abc" and spec.rootfs is None
    assert spec.command == ["httpd", "-f"]
    assert spec.env == {"A": "1"}
    assert spec.hostname == "web"
    assert spec.network == "cp-prj-1" and spec.aliases == ["web"]
    assert spec.cpu == 0.5 and spec.memory_mb == 256
    assert spec.labels == {
        "app": "web",
        "cellplane.cell": "cel-1",
        "cellplane.generation": "1",
        "cellplane.host": "hst-1",
        "cellplane.project": "prj-1",
    }


def test_user_labels_cannot_override_cellplane_labels() -> None:
    labels = {
        "cellplane.cell": "cel-evil",
        "cellplane.host": "hst-other",
        "cellplane.project": "prj-other",
        "cellplane.anything": "x",
        "cellplane.generation": "99",
        "tier": "front",
    }
    spec = container_spec(assignment(labels=labels), "hst-1", "sha256:abc")
    assert spec.labels == {
        "tier": "front",
        "cellplane.cell": "cel-1",
        "cellplane.generation": "1",
        "cellplane.host": "hst-1",
        "cellplane.project": "prj-1",
    }


def test_host_image_uses_the_host_root() -> None:
    cell = assignment(image={"id": "img-h", "kind": "host", "engine_ref": None, "sha256": None})
    spec = container_spec(cell, "hst-1", None)
    assert spec.rootfs == "/" and spec.image is None
    # Even when a ref is passed, a host image never becomes an engine image.
    assert container_spec(cell, "hst-1", "sha256:abc").image is None


def test_host_image_needs_a_command() -> None:
    cell = assignment(
        image={"id": "img-h", "kind": "host", "engine_ref": None, "sha256": None}, command=None
    )
    with pytest.raises(ValueError, match="explicit command"):
        container_spec(cell, "hst-1", None)


def test_no_command_means_the_image_default() -> None:
    assert container_spec(assignment(command=None), "hst-1", "sha256:abc").command is None
    assert container_spec(assignment(command=[]), "hst-1", "sha256:abc").command is None


def test_ports_and_mounts_mapping() -> None:
    cell = assignment(
        ports=[
            {"container_port": 80, "host_port": 8080, "protocol": "tcp"},
            {"container_port": 53, "host_port": None, "protocol": "udp"},
            {"container_port": 9000},
        ],
        mounts=[
            {"volume_id": "vol-1", "engine_name": "cp-vol-1", "path": "/data", "read_only": False},
            {"volume_id": "vol-2", "engine_name": "cp-vol-2", "path": "/cfg", "read_only": True},
        ],
    )
    spec = container_spec(cell, "hst-1", "sha256:abc")
    assert spec.ports == [
        PortSpec(80, 8080, "tcp"),
        PortSpec(53, None, "udp"),
        PortSpec(9000, None, "tcp"),
    ]
    assert spec.mounts == [
        MountSpec("cp-vol-1", "/data", False),
        MountSpec("cp-vol-2", "/cfg", True),
    ]


def test_spec_does_not_alias_the_assignment() -> None:
    cell = assignment()
    spec = container_spec(cell, "hst-1", "sha256:abc")
    spec.env["B"] = "2"
    assert spec.command is not None
    spec.command.append("x")
    assert cell["env"] == {"A": "1"} and cell["command"] == ["httpd", "-f"]


@pytest.mark.parametrize(
    ("subnet", "with_subnet", "expected"),
    [
        # The engine picks the subnet, of the size the control plane gave the network.
        ("10.128.16.0/20", False, {"subnet": None, "prefix_length": 20}),
        # A /24 (networks made before sizing): exactly as the engine always made them.
        ("10.128.0.0/24", False, {"subnet": None, "prefix_length": None}),
        (None, False, {"subnet": None, "prefix_length": None}),
        # Control-plane subnets: that very subnet.
        ("10.128.16.0/20", True, {"subnet": "10.128.16.0/20", "prefix_length": None}),
    ],
)
def test_network_spec_keeps_the_size_of_the_project_network(
    subnet: str | None, with_subnet: bool, expected: dict[str, Any]
) -> None:
    cell = wire.parse(
        wire.CellAssignment, assignment(network={"name": "cp-prj-1", "subnet": subnet})
    )
    spec = network_spec(cell, "hst-1", with_subnet=with_subnet)
    assert spec == NetworkSpec(
        "cp-prj-1",
        labels={"cellplane.host": "hst-1", "cellplane.project": "prj-1"},
        **expected,
    )


def test_a_cell_on_several_networks_joins_each_with_its_address_on_the_overlay() -> None:
    nets = {
        "network": {
            "name": "cp-a",
            "subnet": "10.128.0.0/24",
            "vni": 4096,
            "address": "10.128.0.5",
        },
        "extra_networks": [
            {"name": "cp-b", "subnet": "10.128.1.0/24", "vni": 4097, "address": "10.128.1.6"}
        ],
    }
    spec = container_spec(assignment(**nets), "hst-1", "sha256:abc", overlay=True)
    assert spec.network == "cp-a" and spec.address == "10.128.0.5"
    assert spec.extra_networks == {"cp-b": "10.128.1.6"}
    # Off the overlay the engine's IPAM gives the addresses; an older server sends no more.
    assert container_spec(assignment(**nets), "hst-1", "x").extra_networks == {"cp-b": None}
    assert container_spec(assignment(), "hst-1", "x").extra_networks == {}
    cell = wire.parse(wire.CellAssignment, assignment(**nets))
    made = network_spec(cell, "hst-1", with_subnet=True, network=cell.extra_networks[0])
    assert made.name == "cp-b" and made.subnet == "10.128.1.0/24"
