"""The runc driver's networking decisions: names, addresses, subnets, resolver lines, rules."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import pytest

from cellplane.agent import peerdns
from cellplane.agent.overlay import PeerName, vni_of
from cellplane.drivers.runc_net_dns import Resolver
from cellplane.drivers.runc_net_plan import (
    RUNC_SUBNET_POOLS,
    bridge_name,
    chains_for,
    check_address,
    check_id,
    check_network_name,
    dns_entry,
    filter_rules,
    first_free,
    gateway_of,
    listen_addresses,
    merge_entry,
    nat_rules,
    pick_subnet,
    rebound,
    resolv_conf,
    udp_listeners,
    veth_name,
)


def test_device_names_fit_linux_and_are_never_the_overlays() -> None:
    for text in ("cp-prj-a", "x" * 128, "cp-0123456789abcdef"):
        for dev in (bridge_name(text), veth_name(text)):
            assert len(dev) <= 15
            assert vni_of(dev) is None  # the overlay agent would remove a cpbr<N>/cpvx<N>
    assert bridge_name("a") != bridge_name("b")
    assert veth_name("c1") != veth_name("c2")
    assert bridge_name("a") == bridge_name("a")


@pytest.mark.parametrize("bad", ["", "-x", "a b", "a/b", "../x", "x" * 129, "é"])
def test_names_that_cannot_be_file_names_are_refused_with_the_name(bad: str) -> None:
    with pytest.raises(ValueError, match="network name"):
        check_network_name(bad)
    with pytest.raises(ValueError, match="container id"):
        check_id(bad)


def test_the_gateway_is_the_first_host_and_cells_get_the_lowest_free_after_it() -> None:
    assert gateway_of("10.40.3.0/24") == ("10.40.3.1", 24)
    assert first_free("10.40.3.0/24", []) == "10.40.3.2"
    assert first_free("10.40.3.0/24", ["10.40.3.2", "10.40.3.4"]) == "10.40.3.3"
    # A /30 has one cell address (.2): then it is full.
    assert first_free("10.40.3.0/30", []) == "10.40.3.2"
    assert first_free("10.40.3.0/30", ["10.40.3.2"]) is None
    with pytest.raises(ValueError, match="IPv4 network of at most /30"):
        gateway_of("10.40.3.0/31")


def test_a_given_address_must_be_a_cell_address_of_the_subnet() -> None:
    assert check_address("10.40.3.0/24", "10.40.3.9") == "10.40.3.9"
    for bad, why in [
        ("10.40.4.9", "not in subnet"),
        ("10.40.3.1", "gateway"),
        ("10.40.3.255", "broadcast"),
        ("10.40.3.0", "network"),
        ("nope", "not an IPv4 address"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_address("10.40.3.0/24", bad)


def test_a_subnet_is_picked_from_the_pools_around_the_used_ones() -> None:
    used = [ipaddress.IPv4Network("10.40.0.0/24"), ipaddress.IPv4Network("10.40.1.0/25")]
    assert str(pick_subnet(RUNC_SUBNET_POOLS, 24, used)) == "10.40.2.0/24"
    assert str(pick_subnet(RUNC_SUBNET_POOLS, 16, used)) == "10.41.0.0/16"
    full = [ipaddress.IPv4Network(p) for p in RUNC_SUBNET_POOLS]
    assert pick_subnet(RUNC_SUBNET_POOLS, 24, full) is None
    for pool in RUNC_SUBNET_POOLS:  # apart from the control plane's and podman's pools
        net = ipaddress.IPv4Network(pool)
        assert not net.overlaps(ipaddress.IPv4Network("10.128.0.0/9"))
        assert not net.overlaps(ipaddress.IPv4Network("10.89.0.0/16"))


def test_resolver_lines_are_the_engines_format_and_are_replaced_by_container_id() -> None:
    line = dns_entry("c1", "10.40.0.2", "web", ["api", "web"])
    assert line == "c1 10.40.0.2  web,api"
    text = merge_entry("", "10.40.0.1", "c1", line)
    assert text == "10.40.0.1\nc1 10.40.0.2  web,api\n"
    text = merge_entry(text, "10.40.0.1", "c2", dns_entry("c2", "10.40.0.3", "db", []))
    again = merge_entry(text, "10.40.0.1", "c1", dns_entry("c1", "10.40.0.4", "web", []))
    assert again.splitlines() == ["10.40.0.1", "c2 10.40.0.3  db", "c1 10.40.0.4  web"]
    assert merge_entry(again, "10.40.0.1", "c1", None) == "10.40.0.1\nc2 10.40.0.3  db\n"
    # Another container whose id starts like this one keeps its line.
    kept = merge_entry("10.40.0.1\nc10 10.40.0.9  x\n", "10.40.0.1", "c1", None)
    assert kept == "10.40.0.1\nc10 10.40.0.9  x\n"
    for bad in ("two words", "a,b", ""):
        with pytest.raises(ValueError, match="no blanks or commas"):
            dns_entry("c1", "10.40.0.2", bad, [])


def test_resolv_conf_points_at_the_gateway_with_short_timeouts() -> None:
    assert resolv_conf("10.40.0.1") == "nameserver 10.40.0.1\noptions timeout:1 attempts:2\n"


def test_rules_live_in_our_own_chains_tagged_with_their_network() -> None:
    chains = chains_for("/var/lib/cellplane/runc")
    assert chains == chains_for("/var/lib/cellplane/runc")
    assert chains != chains_for("/other")
    assert len(chains.forward) <= 28 and chains.forward.startswith("CPRUNC-")
    rules = filter_rules(chains, "n1", "cpnX", internal=False)
    assert all(r.chain == chains.forward and r.table == "filter" for r in rules)
    assert all("cprunc:n1" in r.spec for r in rules)
    # The rules into the bridge go on top (inserted first, in reverse order), the way out last.
    top = [r.spec for r in rules if r.first]
    assert top[-1][:4] == ("-i", "cpnX", "-o", "cpnX")
    assert top[0][:2] == ("-o", "cpnX") and top[0][-1] == "DROP"
    out = [r for r in rules if not r.first]
    assert len(out) == 1 and out[0].spec[:2] == ("-i", "cpnX") and out[0].spec[-1] == "ACCEPT"
    internal = [r for r in filter_rules(chains, "n1", "cpnX", internal=True) if not r.first]
    assert internal[0].spec[-1] == "DROP"
    nat = nat_rules(chains, "n1", "10.40.0.0/24", internal=False)
    assert [(r.table, r.chain, r.spec[-1]) for r in nat] == [
        ("nat", chains.postrouting, "MASQUERADE")
    ]
    assert nat[0].spec[:5] == ("-s", "10.40.0.0/24", "!", "-d", "10.40.0.0/24")
    assert nat_rules(chains, "n1", "10.40.0.0/24", internal=True) == []


def test_resolver_files_hold_only_networks_and_a_stale_pid_is_not_signalled(
    tmp_path: Path,
) -> None:
    # No binary: the files are kept as they must be, no process is started.
    resolver = Resolver(tmp_path, binary="")
    resolver.set_network("n1", "10.40.0.1")
    resolver.set_entry("n1", "c1", dns_entry("c1", "10.40.0.2", "web", []))
    resolver.set_entry("n9", "c1", "ignored")  # no file for n9: nothing made
    conf = tmp_path / "aardvark-dns"
    assert sorted(p.name for p in conf.iterdir()) == ["n1"]  # lock and temp files beside it
    assert (conf / "n1").read_text() == "10.40.0.1\nc1 10.40.0.2  web\n"
    resolver.set_network("n1", "10.40.0.1")  # unchanged: entries kept
    assert (conf / "n1").read_text() == "10.40.0.1\nc1 10.40.0.2  web\n"
    (conf / "aardvark.pid").write_text(str(os.getpid()))  # a pid that is not aardvark-dns
    assert resolver.pid() is None
    assert resolver.networks() == ["n1"]
    resolver.remove_network("n1")
    assert resolver.networks() == []
    assert not (conf / "aardvark.pid").exists()


def test_the_agents_peer_names_and_the_drivers_lines_live_side_by_side(tmp_path: Path) -> None:
    """On the overlay the agent's peerdns adds the other hosts' cells to the same files."""
    resolver = Resolver(tmp_path, binary="")
    resolver.set_network("n1", "10.128.0.1")
    resolver.set_entry("n1", "c1", dns_entry("c1", "10.128.0.2", "web", []))
    assert peerdns.sync(tmp_path, "n1", [PeerName("cell-x", "db", "10.128.0.3")])
    resolver.set_entry("n1", "c2", dns_entry("c2", "10.128.0.4", "api", []))
    resolver.set_entry("n1", "c1", None)
    lines = (tmp_path / "aardvark-dns" / "n1").read_text().splitlines()
    assert lines[0] == "10.128.0.1"
    assert [ln.split()[-1] for ln in lines[1:]] == ["db", "api"]
    assert resolver.networks() == ["n1"]


def _udp_row(slot: int, address: str, port: int, inode: int) -> str:
    """One `/proc/net/udp` row as the kernel prints it (the address in host byte order)."""
    value = int.from_bytes(ipaddress.IPv4Address(address).packed, sys.byteorder)
    return (
        f"{slot:5d}: {value:08X}:{port:04X} 00000000:0000 07 00000000:00000000 00:00000000 "
        f"00000000     0        0 {inode} 2 000000002342959c 0"
    )


def test_the_resolvers_sockets_are_read_from_proc_net_udp() -> None:
    header = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    text = "\n".join(
        [
            header,
            _udp_row(1, "10.40.0.1", 53, 100),
            _udp_row(2, "10.40.1.1", 53, 101),
            _udp_row(3, "127.0.0.1", 5353, 102),  # another port
            _udp_row(4, "0.0.0.0", 68, 103),
            "garbage",
            "   5: XYZ:0035 00000000:0000 07 0 0 0 0 0 104",
        ]
    )
    assert udp_listeners(text, 53) == {"10.40.0.1": 100, "10.40.1.1": 101}
    assert udp_listeners(text, 5353) == {"127.0.0.1": 102}
    assert udp_listeners(header, 53) == {}
    assert udp_listeners("", 53) == {}
    # The kernel's own text for 127.0.0.77:5353 on this (little-endian) machine.
    if sys.byteorder == "little":
        row = "9140: 4D00007F:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 77"
        assert udp_listeners(f"{header}\n{row}", 5353) == {"127.0.0.77": 77}


def test_listen_addresses_are_the_ipv4_ones_of_every_files_first_line() -> None:
    headers = ["10.40.0.1", "10.89.0.1,fd00::1", " 10.40.1.1 ", "fd00::2", "", "not-an-address"]
    headers.append("10.89.1.1,fd00::3 1.1.1.1,8.8.8.8")  # upstream servers: not listened on
    assert listen_addresses(headers) == {"10.40.0.1", "10.89.0.1", "10.40.1.1", "10.89.1.1"}
    assert listen_addresses([]) == set()


def test_a_reload_is_over_when_every_address_is_bound_on_a_new_socket() -> None:
    want = {"10.40.0.1", "10.40.1.1"}
    before = {100, 101}
    assert not rebound({"10.40.0.1": 100, "10.40.1.1": 101}, want, before)  # not yet closed
    assert not rebound({}, want, before)  # closed, not bound again
    assert not rebound({"10.40.0.1": 200}, want, before)  # one of two bound again
    assert not rebound({"10.40.0.1": 200, "10.40.1.1": 101}, want, before)
    assert rebound({"10.40.0.1": 200, "10.40.1.1": 201}, want, before)
    assert rebound({"10.40.0.1": 200, "10.40.1.1": 201, "10.40.2.1": 5}, want, before)
    assert rebound({"10.40.0.1": 7}, {"10.40.0.1"}, set())  # a fresh start: bound at all
    assert rebound({}, set(), before)  # nothing to listen on (a network's file only IPv6)
