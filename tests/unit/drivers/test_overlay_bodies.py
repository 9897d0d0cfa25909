"""The engine bodies of the overlay: a network on an existing bridge, a container's address."""

from __future__ import annotations

import pytest

from cellplane.drivers.base import ContainerSpec, NetworkSpec
from cellplane.drivers.podman_bodies import (
    compat_create_body,
    libpod_create_body,
    libpod_network_body,
)


def test_an_overlay_network_is_made_on_the_agents_bridge_with_the_smaller_mtu() -> None:
    spec = NetworkSpec(
        name="cp-prj-a", subnet="10.128.0.0/24", interface="cpbr4096", mtu=1450, labels={"k": "v"}
    )
    body = libpod_network_body(spec)
    assert body["network_interface"] == "cpbr4096"
    assert body["subnets"] == [{"subnet": "10.128.0.0/24"}]
    assert body["options"] == {"isolate": "true", "mtu": "1450"}
    plain = libpod_network_body(NetworkSpec(name="cp-prj-b"))
    assert "network_interface" not in plain and plain["options"] == {"isolate": "true"}


def test_a_container_gets_the_control_planes_address_on_its_network() -> None:
    spec = ContainerSpec(
        name="cp-cel-1", image="busybox", network="cp-prj-a", aliases=["web"], address="10.128.0.7"
    )
    endpoint = compat_create_body(spec)["NetworkingConfig"]["EndpointsConfig"]["cp-prj-a"]
    assert endpoint == {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.128.0.7"}}
    rootfs = ContainerSpec(
        name="cp-cel-2",
        rootfs="/",
        command=["sleep", "1"],
        network="cp-prj-a",
        aliases=["db"],
        address="10.128.0.8",
    )
    assert libpod_create_body(rootfs)["Networks"] == {
        "cp-prj-a": {"aliases": ["db"], "static_ips": ["10.128.0.8"]}
    }
    without = compat_create_body(ContainerSpec(name="c", image="i", network="n"))
    assert "IPAMConfig" not in without["NetworkingConfig"]["EndpointsConfig"]["n"]


def test_an_address_without_a_network_is_refused() -> None:
    with pytest.raises(ValueError, match="need a network"):
        ContainerSpec(name="c", image="i", address="10.128.0.7")


def test_a_container_on_several_networks_gets_an_address_on_each() -> None:
    spec = ContainerSpec(
        name="cp-cel-1",
        image="busybox",
        network="cp-a",
        aliases=["web"],
        address="10.128.0.7",
        extra_networks={"cp-b": "10.128.1.9", "cp-c": None},
    )
    assert compat_create_body(spec)["NetworkingConfig"]["EndpointsConfig"] == {
        "cp-a": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.128.0.7"}},
        "cp-b": {"Aliases": ["web"], "IPAMConfig": {"IPv4Address": "10.128.1.9"}},
        "cp-c": {"Aliases": ["web"]},
    }
    rootfs = ContainerSpec(
        name="cp-cel-2",
        rootfs="/",
        command=["sleep", "1"],
        network="cp-a",
        address="10.128.0.8",
        extra_networks={"cp-b": "10.128.1.10"},
    )
    assert libpod_create_body(rootfs)["Networks"] == {
        "cp-a": {"aliases": [], "static_ips": ["10.128.0.8"]},
        "cp-b": {"aliases": [], "static_ips": ["10.128.1.10"]},
    }
    with pytest.raises(ValueError, match="given twice"):
        ContainerSpec(name="c", image="i", network="cp-a", extra_networks={"cp-a": None})
    with pytest.raises(ValueError, match="need a network"):
        ContainerSpec(name="c", image="i", extra_networks={"cp-b": None})
