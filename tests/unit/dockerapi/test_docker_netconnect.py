"""A container on several networks, the pure part: `docker run --network a --network b`, the
connect/disconnect bodies this endpoint takes, and `docker inspect`'s networks."""

from __future__ import annotations

from typing import Any

import pytest

from cellplane.dockerapi.mapping import Refused, cell_fields
from cellplane.dockerapi.netconnect import check_body, inspect_networks
from cellplane.services.schemas import CellCreate


def _run(mode: str, endpoints: dict[str, Any]) -> dict[str, Any]:
    body = {
        "Image": "busybox",
        "HostConfig": {"NetworkMode": mode},
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }
    return cell_fields("web", body)


def test_run_on_several_networks_keeps_the_order_the_client_gave() -> None:
    f = _run("back", {"back": {}, "front": {}})
    assert f["networks"] == ["back", "front"] and "network" not in f
    assert CellCreate.model_validate(f).networks == ["back", "front"]
    # Docker's bridge is the project's default network, wherever it comes.
    assert _run("bridge", {"bridge": {}, "back": {}})["networks"] == ["default", "back"]
    assert _run("back", {"back": {}, "bridge": {}})["networks"] == ["back", "default"]
    # Only NetworkingConfig (NetworkMode left to "default"): its first entry is the first.
    assert _run("default", {"back": {}, "front": {}})["networks"] == ["back", "front"]
    one = _run("back", {"back": {}})
    assert one["network"] == "back" and "networks" not in one
    with pytest.raises(Refused, match="network Not_A_Label not found"):
        _run("back", {"back": {}, "Not_A_Label": {}})


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"IPAMConfig": {"IPv4Address": "10.0.0.9"}}, "--ip"),
        ({"IPAMConfig": {"IPv6Address": "fd00::9"}}, "--ip6"),
        ({"Links": ["db:db"]}, "--link"),
        ({"Aliases": ["x"]}, "--alias"),
        ({"DriverOpts": {"a": "b"}}, "--driver-opt"),
    ],
)
def test_connect_options_this_endpoint_does_not_take_are_named(
    config: dict[str, Any], words: str
) -> None:
    with pytest.raises(Refused) as err:
        check_body({"Container": "web", "EndpointConfig": config}, True)
    assert err.value.status == 400 and words in err.value.message


def test_connect_bodies_name_a_container() -> None:
    assert check_body({"Container": "web", "EndpointConfig": {}}, True) == "web"
    assert check_body({"Container": "web", "Force": False}, False) == "web"
    for bad in (None, [], {}, {"Container": 3}):
        with pytest.raises(Refused, match="must name a Container"):
            check_body(bad, True)


def test_inspect_lists_every_network_with_its_address() -> None:
    cell = {
        "id": "cel-1",
        "name": "web",
        "labels": {},
        "address": "10.89.0.5",
        "networks": [
            {"name": "default", "address": None},
            {"name": "back", "address": "10.128.1.3"},
        ],
    }
    view: dict[str, Any] = {"NetworkSettings": {"Networks": {"bridge": {}}}}
    inspect_networks(view, cell)
    nets = view["NetworkSettings"]["Networks"]
    assert list(nets) == ["bridge", "back"]
    assert nets["bridge"]["IPAddress"] == "10.89.0.5"  # none listed: the cell's own address
    assert nets["back"]["IPAddress"] == "10.128.1.3"
    assert nets["back"]["Aliases"] == ["web"]
    # A name the client gave the first network (Compose's) is the one reported.
    named: dict[str, Any] = {"NetworkSettings": {"Networks": {}}}
    inspect_networks(named, {**cell, "labels": {"cellplane.docker.network": "proj_default"}})
    assert list(named["NetworkSettings"]["Networks"]) == ["proj_default", "back"]
    # One network: the view is left as it was made.
    single: dict[str, Any] = {"NetworkSettings": {"Networks": {"bridge": {"IPAddress": "x"}}}}
    inspect_networks(single, {**cell, "networks": cell["networks"][:1]})
    assert single["NetworkSettings"]["Networks"] == {"bridge": {"IPAddress": "x"}}
