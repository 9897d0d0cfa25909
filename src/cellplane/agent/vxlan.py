"""The overlay's devices on this host, through netlink (pyroute2): bridge, VXLAN device, FDB.

`ensure` makes (or adopts) the bridge and the VXLAN device of one network and brings its
all-zeros FDB entries to the peer hosts in line; `remove` takes both devices away; `present`
lists the VNIs that have devices here. Idempotent, so the agent calls them on every pass.
Runs in the agent's network namespace (a namespace host's agent is started inside it).
What to change is decided by the pure `agent.overlay`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cellplane.agent.overlay import (
    DEFAULT_DSTPORT,
    bridge_name,
    fdb_changes,
    gateway_interface,
    gateway_mac,
    overlay_mtu,
    vni_of,
    vxlan_name,
)

__all__ = ["OverlayError", "ensure", "overlay_mtu", "present", "remove", "underlay_mtu"]

_ZERO_MAC = "00:00:00:00:00:00"
_ENOENT = 2
_ENODEV = 19


class OverlayError(RuntimeError):
    """A device of the overlay could not be made or changed (the message names which)."""


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def underlay_mtu(local: str, default: int = 1500) -> int:
    """The MTU of the device that holds the underlay address `local` (`default` if none does)."""
    with IPRoute() as ipr:
        for addr in ipr.get_addr(address=local):
            links = ipr.get_links(addr["index"])
            if links:
                return int(links[0].get_attr("IFLA_MTU") or default)
    return default


def ensure(
    vni: int,
    local: str,
    peers: Iterable[str],
    *,
    dstport: int = DEFAULT_DSTPORT,
    mtu: int = 1500,
    subnet: str | None = None,
) -> None:
    """The bridge and VXLAN device of `vni`, up, with exactly `peers` as flood destinations.

    The bridge gets the network's anycast gateway MAC (`overlay.gateway_mac`) and, given the
    network's `subnet`, its gateway address (`overlay.gateway_interface`).

    `mtu` is the underlay's; the overlay's devices get it less the VXLAN headers.
    """
    br, vx = bridge_name(vni), vxlan_name(vni)
    inner = overlay_mtu(mtu)
    try:
        with IPRoute() as ipr:
            br_idx = _index(ipr, br)
            if br_idx is None:
                with contextlib.suppress(NetlinkError):  # made meanwhile (the engine): adopted
                    ipr.link("add", ifname=br, kind="bridge")
                br_idx = _index(ipr, br)
                if br_idx is None:
                    raise OverlayError(f"bridge {br} could not be made")
            vx_idx = _index(ipr, vx)
            if vx_idx is None:
                ipr.link(
                    "add",
                    ifname=vx,
                    kind="vxlan",
                    vxlan_id=vni,
                    vxlan_local=local,
                    vxlan_port=dstport,
                    vxlan_learning=1,
                )
                vx_idx = _index(ipr, vx)
                if vx_idx is None:
                    raise OverlayError(f"VXLAN device {vx} could not be made")
            link = ipr.get_links(vx_idx)[0]
            if link.get_attr("IFLA_MASTER") != br_idx or link.get_attr("IFLA_MTU") != inner:
                ipr.link("set", index=vx_idx, master=br_idx, mtu=inner)
            ipr.link("set", index=vx_idx, state="up")
            bridge = ipr.get_links(br_idx)[0]
            if bridge.get_attr("IFLA_MTU") != inner:
                ipr.link("set", index=br_idx, mtu=inner)
            if bridge.get_attr("IFLA_ADDRESS") != gateway_mac(vni):
                ipr.link("set", index=br_idx, address=gateway_mac(vni))
            ipr.link("set", index=br_idx, state="up")
            if subnet is not None:
                address, prefixlen = gateway_interface(subnet)
                have_addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=br_idx)}
                if address not in have_addrs:
                    ipr.addr("add", index=br_idx, address=address, prefixlen=prefixlen)
            have = [
                str(e.get_attr("NDA_DST"))
                for e in ipr.fdb("dump", ifindex=vx_idx)
                if e.get("ifindex") == vx_idx
                and e.get_attr("NDA_LLADDR") == _ZERO_MAC
                and e.get_attr("NDA_DST")
            ]
            change = fdb_changes(have, peers, local)
            for dst in change.add:
                ipr.fdb("append", ifindex=vx_idx, lladdr=_ZERO_MAC, dst=dst)
            for dst in change.remove:
                with contextlib.suppress(NetlinkError):
                    ipr.fdb("del", ifindex=vx_idx, lladdr=_ZERO_MAC, dst=dst)
    except NetlinkError as exc:
        raise OverlayError(f"overlay network {vni} ({br}, {vx}): {exc}") from exc


def remove(vni: int) -> None:
    """Take the network's VXLAN device and bridge away; no error if they are gone."""
    with IPRoute() as ipr:
        for name in (vxlan_name(vni), bridge_name(vni)):
            idx = _index(ipr, name)
            if idx is None:
                continue
            try:
                ipr.link("del", index=idx)
            except NetlinkError as exc:
                if exc.code not in (_ENOENT, _ENODEV):
                    raise OverlayError(f"removing {name}: {exc}") from exc


def present() -> set[int]:
    """The VNIs that have a device of the overlay on this host."""
    with IPRoute() as ipr:
        names = [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]
    return {v for v in (vni_of(n) for n in names) if v is not None}
