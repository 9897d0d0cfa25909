"""The runc driver's networking decisions: names, addresses, subnets, resolver lines, rules."""

from __future__ import annotations

import ipaddress
import os
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
    merge_entry,
    nat_rules,
    pick_subnet,
    resolv_conf,
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
