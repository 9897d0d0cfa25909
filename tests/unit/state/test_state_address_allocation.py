"""The lowest free address of a network, against the `ipaddress` reference it replaced, and the
next addresses of a network without holes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellplane.state.networks import free_address, free_addresses, next_addresses


def _reference(subnet: str, taken: list[str | None], n: int) -> list[str]:
    net = ipaddress.ip_network(subnet)
    used = {ipaddress.ip_address(a) for a in taken if a}
    hosts = range(int(net.network_address) + 2, int(net.broadcast_address))
    return [str(ipaddress.ip_address(k)) for k in hosts if ipaddress.ip_address(k) not in used][:n]


SUBNETS = ["10.128.0.0/24", "10.40.8.0/29", "10.255.255.0/28", "0.0.0.0/30", "192.168.1.0/30"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SUBNETS), st.data(), st.integers(1, 20))
def test_free_addresses_are_the_references(subnet: str, data: st.DataObject, n: int) -> None:
    net = ipaddress.ip_network(subnet)
    everything = [str(a) for a in net]  # the gateway and the ends included: taken or not
    taken = data.draw(st.lists(st.sampled_from([*everything, None, "10.9.9.9"]), max_size=40))
    assert free_addresses(subnet, taken, n) == _reference(subnet, taken, n)
    want = _reference(subnet, taken, 1)
    if want:
        assert free_address(subnet, taken) == want[0]
    else:
        with pytest.raises(ValueError, match="no free address is left"):
            free_address(subnet, taken)


def test_a_dense_network_gets_the_address_after_the_last_and_a_gap_first() -> None:
    taken = [f"10.128.{k // 256}.{k % 256}" for k in range(2, 4000)]
    assert free_address("10.128.0.0/20", taken) == "10.128.15.160"
    taken.remove("10.128.3.7")
    assert free_address("10.128.0.0/20", taken) == "10.128.3.7"
    assert free_addresses("10.128.0.0/20", taken, 3) == [
        "10.128.3.7",
        "10.128.15.160",
        "10.128.15.161",
    ]


def test_ipv6_still_goes_through_ipaddress() -> None:
    assert free_addresses("fd00::/125", ["fd00::2", "fd00::5"], 5) == [
        "fd00::3",
        "fd00::4",
        "fd00::6",
    ]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SUBNETS), st.data(), st.integers(1, 20))
def test_next_addresses_are_the_lowest_free_of_a_network_without_holes(
    subnet: str, data: st.DataObject, n: int
) -> None:
    """Stored addresses taken from the bottom without holes, plus pending ones anywhere: the
    next ones are the reference's lowest free, or [] when there are fewer than `n` left."""
    net = ipaddress.ip_network(subnet)
    hosts = [str(ipaddress.ip_address(k)) for k in range(int(net[2]), int(net.broadcast_address))]
    stored = data.draw(st.integers(0, len(hosts)))
    pending = data.draw(st.lists(st.sampled_from([*hosts, None]), max_size=10))
    want = _reference(subnet, [*hosts[:stored], *pending], n)
    got = next_addresses(subnet, stored, pending, n)
    assert got == (want if len(want) == n else [])
