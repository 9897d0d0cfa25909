"""A network's bridge keeps one MAC address for as long as it exists.

Linux gives a bridge whose address was never set the lowest address of its ports, so it
changes whenever a container's veth with a lower address joins or the lowest one leaves. The
cells on the bridge keep the old address of their gateway in their neighbour caches until it
goes stale (seconds), and what they send to the gateway meanwhile is lost: their name lookups
(the engine's resolver listens on the gateway), their traffic to the host and beyond it. Seen
here as a cell that could not resolve the name of one started a moment before ("bad address")
while the resolver answered the host. netavark 1.4 (Debian 12's) leaves its bridges so; newer
ones set their address. Setting it, to the one it has, ends the changes: the kernel keeps a set
address (`addr_assign_type` 3) whatever ports come and go.

Setting an address tells the kernel's neighbour tables to forget the device's entries, so each
bridge is pinned once (per interface index: a bridge made again is pinned again).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import structlog

__all__ = ["BridgePins"]

log = structlog.get_logger(__name__)


class BridgePins:
    """Pins the bridges of an engine's networks; `interface_of` names a network's bridge (None:
    it has none, or the engine does not say)."""

    def __init__(self, interface_of: Callable[[str], str | None]) -> None:
        self._interface_of = interface_of
        self._interfaces: dict[str, str] = {}  # network -> its bridge
        self._pinned: set[tuple[str, int]] = set()  # (bridge, interface index)
        self._lock = threading.Lock()

    def pin(self, network: str) -> bool:
        """Set the address of `network`'s bridge to the one it has, unless done already; True
        if it was set now. The bridge exists once a container on the network has started."""
        bridge = self._interfaces.get(network)
        if bridge is None:
            bridge = self._interface_of(network)
            if not bridge:
                return False
            self._interfaces[network] = bridge
        try:
            index = socket.if_nametoindex(bridge)  # an ioctl: a start pays no more once pinned
        except OSError:
            self._interfaces.pop(network, None)  # not there (yet, or any more): asked again
            return False
        if (bridge, index) in self._pinned:
            return False
        from pyroute2 import IPRoute, NetlinkError  # netlink: imported on the first pin only

        with self._lock, IPRoute() as ipr:
            try:
                address = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
                ipr.link("set", index=index, address=address)
            except NetlinkError as exc:  # not ours to fail a start on: logged, tried again
                log.warning("bridge address not set", bridge=bridge, error=str(exc))
                return False
            self._pinned.add((bridge, index))
        return True
