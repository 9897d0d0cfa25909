"""The underlay of dev hosts, with pyroute2: one bridge in the root namespace, a network namespace
per host joined to it by a veth pair.

The bridge (``cpu0`` by default) carries a private /24 (``10.77.0.0/24``); the root side takes
the first address (the server listens there, so every host reaches it) and each host one of its
own. Only links, addresses and namespaces whose names Cellplane chose are touched.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetNS, netns
from pyroute2.netlink.exceptions import NetlinkError

__all__ = [
    "NETNS_DIR",
    "Underlay",
    "add_namespace_link",
    "bridge_exists",
    "ensure_bridge",
    "namespace_exists",
    "namespace_path",
    "remove_bridge",
    "remove_namespace",
]

NETNS_DIR = Path("/run/netns")
_EEXIST = 17
_ENODEV = 19


@dataclass(frozen=True)
class Underlay:
    """The dev hosts' private network: ``bridge`` and its subnet (root side: the first host)."""

    bridge: str = "cpu0"
    subnet: str = "10.77.0.0/24"
    # A host NAME is the network namespace <namespace_prefix>NAME.
    namespace_prefix: str = "cp-"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: where the server listens for hosts."""
        return str(self.network.network_address + 1)

    def address(self, index: int) -> str:
        """The address of host number ``index`` (from 0): the 10th address on."""
        addr = self.network.network_address + 10 + index
        if addr >= self.network.broadcast_address:
            raise ValueError(f"the underlay {self.subnet} has no address left for host {index}")
        return str(addr)


def namespace_path(ns: str) -> Path:
    return NETNS_DIR / ns


def namespace_exists(ns: str) -> bool:
    return namespace_path(ns).exists()


def _index(ip: Any, name: str) -> int | None:
    found = ip.link_lookup(ifname=name)
    return int(found[0]) if found else None


def bridge_exists(underlay: Underlay) -> bool:
    with IPRoute() as ip:
        return _index(ip, underlay.bridge) is not None


def ensure_bridge(underlay: Underlay) -> None:
    """Create the bridge with the gateway address, up (idempotent)."""
    with IPRoute() as ip:
        idx = _index(ip, underlay.bridge)
        if idx is None:
            with contextlib.suppress(NetlinkError):
                ip.link("add", ifname=underlay.bridge, kind="bridge")
            idx = _index(ip, underlay.bridge)
            if idx is None:
                raise RuntimeError(f"could not create the bridge {underlay.bridge}")
        have = {a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=idx, family=2)}
        if underlay.gateway not in have:
            ip.addr(
                "add", index=idx, address=underlay.gateway, prefixlen=underlay.network.prefixlen
            )
        ip.link("set", index=idx, state="up")


def remove_bridge(underlay: Underlay) -> None:
    with IPRoute() as ip:
        idx = _index(ip, underlay.bridge)
        if idx is not None:
            with contextlib.suppress(NetlinkError):
                ip.link("del", index=idx)


def add_namespace_link(
    underlay: Underlay, ns: str, root_side: str, address: str, *, mtu: int = 1500
) -> None:
    """Create namespace ``ns`` (if missing) and join it to the bridge: a veth pair whose root side
    ``root_side`` is on the bridge and whose other side is ``eth0`` in ``ns`` with ``address``."""
    if not namespace_exists(ns):
        netns.create(ns)
    peer = f"{root_side}p"[:15]
    with IPRoute() as ip:
        bridge = _index(ip, underlay.bridge)
        if bridge is None:
            raise RuntimeError(f"the bridge {underlay.bridge} does not exist")
        old = _index(ip, root_side)
        if old is not None:  # left by an earlier run: start clean
            ip.link("del", index=old)
        ip.link("add", ifname=root_side, kind="veth", peer=peer)
        veth = _index(ip, root_side)
        other = _index(ip, peer)
        if veth is None or other is None:
            raise RuntimeError(f"could not create the veth pair {root_side}/{peer}")
        ip.link("set", index=veth, master=bridge, mtu=mtu, state="up")
        ip.link("set", index=other, net_ns_fd=ns)
    with NetNS(ns) as inner:
        lo = _index(inner, "lo")
        if lo is not None:
            inner.link("set", index=lo, state="up")
        idx = _index(inner, peer)
        if idx is None:
            raise RuntimeError(f"{peer} did not arrive in namespace {ns}")
        inner.link("set", index=idx, ifname="eth0", mtu=mtu)
        inner.addr("add", index=idx, address=address, prefixlen=underlay.network.prefixlen)
        inner.link("set", index=idx, state="up")
        with contextlib.suppress(NetlinkError):  # reach past the underlay through the root side
            inner.route("add", dst="0.0.0.0/0", gateway=underlay.gateway)


def remove_namespace(ns: str, root_side: str) -> None:
    """Delete the veth pair (its root side; "" if unknown: it goes with the namespace) and the
    namespace (idempotent)."""
    with IPRoute() as ip:
        idx = _index(ip, root_side) if root_side else None
        if idx is not None:
            with contextlib.suppress(NetlinkError):
                ip.link("del", index=idx)
    if namespace_exists(ns):
        with contextlib.suppress(OSError):
            netns.remove(ns)
