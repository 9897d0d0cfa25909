"""`RuncNetworks` on the real kernel (as root): namespaces, veths, bridges, rules, aardvark-dns.

No container is started (no podman): each "cell" is a network namespace made by `attach`, and
commands run in it with `nsenter --net=<netns_path>` (busybox's ping and nslookup). Every
network, device and rule has a name unique to the test run; the fixture removes all of it, also
when a test fails, and checks that nothing is left. Addresses are only those of the networks the
tests made.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from cellplane.drivers import errors
from cellplane.drivers.base import NetworkSpec
from cellplane.drivers.runc_net import RuncNetworks
from cellplane.drivers.runc_net_ns import NsSetup, drop_namespace, make_namespace
from cellplane.drivers.runc_net_plan import bridge_name, chains_for, veth_name

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="namespaces, bridges and iptables need root"),
]


def _in(netns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={netns}", *cmd], capture_output=True, text=True, timeout=30
    )


def _ping(netns: str, address: str, wait: int = 3) -> bool:
    """One echo answered within `wait` s (the first may wait for ARP on a busy machine)."""
    done = _in(netns, "busybox", "ping", "-c", "1", "-W", str(wait), address)
    return done.returncode == 0


def _why(netns: str, address: str) -> str:
    """What a failed ping assertion needs to be understood (the host's rules, the cell's routes,
    a second try): this test failed once in a full CI run and passed alone."""
    again = _ping(netns, address)
    parts = [f"a second ping {'succeeded' if again else 'failed too'}"]
    for cmd in (
        ["ip", "-o", "addr"],
        ["ip", "route"],
        ["iptables", "-S", "FORWARD"],
        ["iptables", "-t", "nat", "-S", "POSTROUTING"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        parts.append(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}")
    routes = _in(netns, "ip", "route")
    parts.append(f"$ ip route (in the cell)\n{routes.stdout}{routes.stderr}")
    return "\n".join(parts)


def _no_ping(netns: str, address: str) -> bool:
    """No answer within 1 s (nothing would come later either: the packets are dropped)."""
    return not _ping(netns, address, wait=1)


def _lookup(netns: str, name: str, server: str) -> str:
    done = _in(netns, "busybox", "nslookup", name, server)
    return done.stdout + done.stderr


def _links() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}


def _rules() -> str:
    out = []
    for table in ("filter", "nat"):
        done = subprocess.run(["iptables", "-w", "5", "-t", table, "-S"], capture_output=True)
        out.append(done.stdout.decode())
    return "\n".join(out)


def _gone(check: object, deadline: float = 10.0) -> bool:
    """Poll `check` (a callable) until true: the kernel deletes a dropped namespace's veth
    pair asynchronously."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(check())  # type: ignore[operator]


@pytest.fixture
def run() -> Iterator[tuple[RuncNetworks, str]]:
    """A driver instance in a fresh run dir and a tag for unique names; all removed after."""
    run_dir = Path(tempfile.mkdtemp(prefix="cp-runcnet-"))
    tag = uuid.uuid4().hex[:8]
    nets = RuncNetworks(run_dir)
    try:
        yield nets, tag
    finally:
        # Cleaned up from what the run dir records: a test's second instance (an agent after a
        # restart) attaches cells the first one does not know of, and a failed test left one.
        made = set(nets.list_networks({}))
        nets.close()
        nets = RuncNetworks(run_dir)
        made |= set(nets.list_networks({}))
        for cid in list(nets.attachments()):
            with contextlib.suppress(errors.DriverError):
                nets.detach(cid)
        for name in made:
            with contextlib.suppress(errors.DriverError):
                nets.remove_network(name)
        pid = nets.resolver_pid()
        nets.close()
        chains = chains_for(str(run_dir))
        leftovers = _rules()
        shutil.rmtree(run_dir, ignore_errors=True)
        assert pid is None, "aardvark-dns still runs"
        assert chains.forward not in leftovers and chains.postrouting not in leftovers
        assert not {bridge_name(n) for n in made} & _links()


def test_cells_on_one_network_reach_each_other_by_address_and_by_name(
    run: tuple[RuncNetworks, str],
) -> None:
    nets, tag = run
    net = f"t{tag}-one"
    nets.ensure_network(NetworkSpec(name=net, labels={"run": tag}))
    nets.ensure_network(NetworkSpec(name=net, labels={"run": tag}))  # idempotent
    assert nets.list_networks({"run": tag}) == [net]
    a = nets.attach(f"{tag}a", net, None, "alpha", ["web"])
    b = nets.attach(f"{tag}b", net, None, "beta", [])
    assert a.address != b.address
    assert nets.attach(f"{tag}a", net, None, "alpha", ["web"]) == a  # idempotent
    gateway = nets.resolv_conf(net).split()[1]
    assert nets.resolv_conf(net) == f"nameserver {gateway}\noptions timeout:1 attempts:2\n"
    assert _ping(a.netns_path, b.address) and _ping(b.netns_path, a.address)
    assert _ping(a.netns_path, gateway)
    assert f"Address: {b.address}" in _lookup(a.netns_path, "beta", gateway)
    assert f"Address: {a.address}" in _lookup(b.netns_path, "web", gateway)  # an alias
    # A cell that went has no name any more (the resolver was told).
    nets.detach(f"{tag}b")
    assert b.address not in _lookup(a.netns_path, "beta", gateway)


def test_two_networks_cannot_reach_each_other(run: tuple[RuncNetworks, str]) -> None:
    nets, tag = run
    one, two = f"t{tag}-a", f"t{tag}-b"
    nets.ensure_network(NetworkSpec(name=one))
    nets.ensure_network(NetworkSpec(name=two))
    assert nets.subnet(one) != nets.subnet(two)
    a = nets.attach(f"{tag}a", one, None, "a", [])
    b = nets.attach(f"{tag}b", two, None, "b", [])
    # Each reaches its own gateway (the set-up works), neither the other's cell.
    assert _ping(a.netns_path, nets.resolv_conf(one).split()[1])
    assert _ping(b.netns_path, nets.resolv_conf(two).split()[1])
    assert _no_ping(a.netns_path, b.address)
    assert _no_ping(b.netns_path, a.address)
    # Nor by name: b's resolver knows nothing of a.
    assert a.address not in _lookup(b.netns_path, "a", nets.resolv_conf(two).split()[1])


def test_detach_and_remove_leave_nothing_behind(run: tuple[RuncNetworks, str]) -> None:
    nets, tag = run
    net = f"t{tag}-gone"
    nets.ensure_network(NetworkSpec(name=net))
    cid = f"{tag}c"
    att = nets.attach(cid, net, None, "c", [])
    assert veth_name(cid) in _links() and bridge_name(net) in _links()
    assert nets.resolver_pid() is not None
    with pytest.raises(errors.PermanentDriverError, match="in use by 1 container"):
        nets.remove_network(net)
    # A cell restarted at once gets a namespace again (its old veth pair may still be there).
    nets.detach(cid)
    again = nets.attach(cid, net, None, "c", [])
    assert _ping(again.netns_path, nets.resolv_conf(net).split()[1])
    att = again
    nets.detach(cid)
    nets.detach(cid)  # idempotent
    assert not Path(att.netns_path).exists()
    assert att.netns_path.encode() not in Path("/proc/self/mountinfo").read_bytes()
    assert _gone(lambda: veth_name(cid) not in _links())
    nets.remove_network(net)
    nets.remove_network(net)  # idempotent
    assert bridge_name(net) not in _links()
    assert f"cprunc:{net}" not in _rules()
    assert _gone(lambda: nets.resolver_pid() is None)
    assert list((nets.run_dir / "attached").iterdir()) == []
    assert list((nets.run_dir / "networks").iterdir()) == []


def test_addresses_given_taken_and_exhausted(run: tuple[RuncNetworks, str]) -> None:
    nets, tag = run
    net = f"t{tag}-small"
    nets.ensure_network(NetworkSpec(name=net, prefix_length=29))  # .2 to .6: five cells
    subnet = nets.subnet(net)
    assert subnet.endswith("/29")
    fifth = str(ipaddress.IPv4Network(subnet).network_address + 5)
    given = nets.attach(f"{tag}g", net, fifth, "g", [])
    with pytest.raises(errors.PermanentDriverError, match=f"in use by container {tag}g"):
        nets.attach(f"{tag}x", net, given.address, "x", [])
    with pytest.raises(errors.PermanentDriverError, match="not in subnet"):
        nets.attach(f"{tag}y", net, "192.0.2.7", "y", [])
    with pytest.raises(errors.NetworkNotFound):
        nets.attach(f"{tag}z", f"t{tag}-nope", None, "z", [])
    for i in range(4):
        nets.attach(f"{tag}{i}", net, None, f"n{i}", [])
    with pytest.raises(errors.AddressesExhausted, match=f"IPAM: no free address in {net}"):
        nets.attach(f"{tag}full", net, None, "full", [])
    # The refused attaches left nothing: no namespace file, no record.
    assert sorted(p.name for p in (nets.run_dir / "netns").iterdir()) == sorted(
        [f"{tag}g", *(f"{tag}{i}" for i in range(4))]
    )
    nets.detach(f"{tag}0")  # its address comes free again
    again = nets.attach(f"{tag}again", net, None, "again", [])
    assert _ping(again.netns_path, given.address)


def test_a_restarted_agent_adopts_networks_and_cells(run: tuple[RuncNetworks, str]) -> None:
    nets, tag = run
    net = f"t{tag}-adopt"
    nets.ensure_network(NetworkSpec(name=net))
    a = nets.attach(f"{tag}a", net, None, "a", [])
    pid = nets.resolver_pid()
    later = RuncNetworks(nets.run_dir)  # the agent after a restart: a new instance
    later.adopt()
    assert later.attachments() == {f"{tag}a": a}
    assert later.list_networks({}) == [net]
    assert later.resolver_pid() == pid
    b = later.attach(f"{tag}b", net, None, "b", [])
    assert b.address != a.address
    gateway = later.resolv_conf(net).split()[1]
    assert f"Address: {a.address}" in _lookup(b.netns_path, "a", gateway)
    later.detach(f"{tag}b")
    # A namespace that went behind the driver's back (a reboot with a kept run dir): the next
    # adopt drops the record and frees the address; attaching again makes a new one.
    drop_namespace(Path(a.netns_path))
    again = RuncNetworks(nets.run_dir)
    again.adopt()
    assert again.attachments() == {}
    assert list((again.run_dir / "ipam" / net).iterdir()) == []
    back = again.attach(f"{tag}a", net, a.address, "a", [])
    assert _ping(back.netns_path, gateway)
    again.close()
    later.close()


def test_a_cells_name_is_served_the_moment_attach_returns(run: tuple[RuncNetworks, str]) -> None:
    """aardvark-dns 1.4 closes and binds again all its sockets on every reload, and its `run`
    returns before it binds: a lookup right after `attach` was refused or unanswered (this
    failed the adopt test below once in CI). One query each, no retry, from the host."""
    nets, tag = run
    net = f"t{tag}-served"
    nets.ensure_network(NetworkSpec(name=net))
    gateway = nets.resolv_conf(net).split()[1]
    for i in range(8):
        att = nets.attach(f"{tag}{i}", net, None, f"s{i}", [])
        done = subprocess.run(
            ["busybox", "nslookup", f"s{i}", gateway], capture_output=True, text=True, timeout=30
        )
        assert f"Address: {att.address}" in done.stdout, done.stdout + done.stderr
    nets.detach(f"{tag}0")
    done = subprocess.run(
        ["busybox", "nslookup", "s1", gateway], capture_output=True, text=True, timeout=30
    )
    assert "Address: " in done.stdout.split("Name:", 1)[-1], done.stdout + done.stderr


def test_an_attach_that_leaves_its_wait_owed_is_served_once_settled(
    run: tuple[RuncNetworks, str],
) -> None:
    """The runc driver attaches with `settle=False` and settles after `runc run`: the name is
    served once `settle_names` returns, and a change made while a wait is owed settles it first
    (so two reloads are never in flight: every name of the run is served after each)."""
    nets, tag = run
    net = f"t{tag}-owed"
    nets.ensure_network(NetworkSpec(name=net))
    gateway = nets.resolv_conf(net).split()[1]
    atts = []
    for i in range(6):
        atts.append(nets.attach(f"{tag}o{i}", net, None, f"o{i}", [], settle=False))
        assert nets._resolver._owed is not None  # signalled, not waited for
    nets.settle_names()
    assert nets._resolver._owed is None
    nets.settle_names()  # nothing owed: returns at once
    for i, att in enumerate(atts):
        done = subprocess.run(
            ["busybox", "nslookup", f"o{i}", gateway], capture_output=True, text=True, timeout=30
        )
        assert f"Address: {att.address}" in done.stdout, done.stdout + done.stderr
    nets.attach(f"{tag}o6", net, None, "o6", [], settle=False)
    nets.detach(f"{tag}o0")  # settles the owed wait, then waits for its own
    assert nets._resolver._owed is None
    done = subprocess.run(
        ["busybox", "nslookup", "o6", gateway], capture_output=True, text=True, timeout=30
    )
    assert "Address: " in done.stdout.split("Name:", 1)[-1], done.stdout + done.stderr


def test_the_overlays_bridge_is_used_with_its_anycast_mac_and_kept(
    run: tuple[RuncNetworks, str],
) -> None:
    nets, tag = run
    vni = 16_000_000 + int(tag[:5], 16) % 700_000
    bridge = f"cpbr{vni}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=bridge, kind="bridge")
    try:
        net = f"t{tag}-ovl"
        nets.ensure_network(
            NetworkSpec(name=net, subnet="10.251.77.0/24", interface=bridge, mtu=1450)
        )
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=bridge)[0]
            mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
            addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx)}
        assert mac == f"02:63:70:{vni >> 16 & 0xFF:02x}:{vni >> 8 & 0xFF:02x}:{vni & 0xFF:02x}"
        assert "10.251.77.1" in addrs
        a = nets.attach(f"{tag}a", net, "10.251.77.9", "a", [])
        assert a.address == "10.251.77.9"
        assert " mtu 1450 " in _in(a.netns_path, "ip", "-o", "link", "show", "dev", "eth0").stdout
        assert _ping(a.netns_path, "10.251.77.1")
        nets.detach(f"{tag}a")
        nets.remove_network(net)
        assert bridge in _links()  # the overlay's: not ours to delete
    finally:
        with IPRoute() as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=ipr.link_lookup(ifname=bridge)[0])


def test_the_way_out_is_masqueraded_and_closed_for_internal_networks(
    run: tuple[RuncNetworks, str],
) -> None:
    """An "outside" the test makes: a bridge with 10.252.<n>.1 on the host and a namespace with
    10.252.<n>.2 that has no route back to the cells' subnets, so it can only answer a cell
    whose packets were masqueraded to the host's address."""
    nets, tag = run
    n = int(tag[:4], 16) % 250
    bridge = f"cpo{tag}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=bridge, kind="bridge")
        idx = ipr.link_lookup(ifname=bridge)[0]
        ipr.addr("add", index=idx, address=f"10.252.{n}.1", prefixlen=24)
        ipr.link("set", index=idx, state="up")
    outside = nets.run_dir / f"outside-{tag}"
    try:
        with IPRoute() as host:
            setup = NsSetup(outside, f"cpx{tag}", idx, f"10.252.{n}.2", 24, f"10.252.{n}.1", None)
            make_namespace(setup, host, threading.Lock())
        _in(str(outside), "ip", "route", "del", "default")  # no way back but masquerade
        out_net, closed = f"t{tag}-out", f"t{tag}-int"
        nets.ensure_network(NetworkSpec(name=out_net))
        nets.ensure_network(NetworkSpec(name=closed, internal=True))
        a = nets.attach(f"{tag}a", out_net, None, "a", [])
        b = nets.attach(f"{tag}b", closed, None, "b", [])
        assert _ping(a.netns_path, f"10.252.{n}.2"), _why(a.netns_path, f"10.252.{n}.2")
        assert _no_ping(b.netns_path, f"10.252.{n}.2"), _why(b.netns_path, f"10.252.{n}.2")
        gateway = nets.resolv_conf(closed).split()[1]
        assert _ping(b.netns_path, gateway), _why(b.netns_path, gateway)  # its own gateway: yes
    finally:
        drop_namespace(outside)
        with IPRoute() as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=ipr.link_lookup(ifname=bridge)[0])


def test_300_cells_attached_from_8_threads_get_distinct_addresses_and_names(
    run: tuple[RuncNetworks, str],
) -> None:
    """The agent's workers attach at once: one network sized past a /24 holds 300 cells."""
    nets, tag = run
    net = f"t{tag}-many"
    nets.ensure_network(NetworkSpec(name=net, prefix_length=23))
    with ThreadPoolExecutor(8) as pool:
        atts = list(
            pool.map(lambda i: nets.attach(f"{tag}{i}", net, None, f"m{i}", []), range(300))
        )
    assert len({a.address for a in atts}) == 300
    resolvers = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(nets.run_dir).encode() in _cmdline(p)
    ]
    assert len(resolvers) == 1
    gateway = nets.resolv_conf(net).split()[1]
    assert f"Address: {atts[299].address}" in _lookup(atts[0].netns_path, "m299", gateway)
    assert _ping(atts[299].netns_path, atts[0].address)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(nets.detach, [f"{tag}{i}" for i in range(300)]))
    assert nets.attachments() == {}
    assert list((nets.run_dir / "ipam" / net).iterdir()) == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_remove_takes_what_a_crash_left_without_a_record(run: tuple[RuncNetworks, str]) -> None:
    nets, tag = run
    net = f"t{tag}-crash"
    nets.ensure_network(NetworkSpec(name=net))
    (nets.run_dir / "networks" / f"{net}.json").unlink()  # the agent died before it was kept
    fresh = RuncNetworks(nets.run_dir)
    assert fresh.list_networks({}) == []
    fresh.remove_network(net)
    assert bridge_name(net) not in _links()
    assert f"cprunc:{net}" not in _rules()
    assert fresh.resolver_pid() is None
    fresh.close()
