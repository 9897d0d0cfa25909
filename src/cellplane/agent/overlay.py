"""The overlay on one host, as pure decisions: device names, FDB changes, peer name entries.

A project network spans every host that runs one of its cells. On each host the agent keeps a
Linux bridge per network (`bridge_name`), a VXLAN device with the network's VNI enslaved to it
(`vxlan_name`), and one all-zeros FDB entry per peer host (broadcast, unknown unicast and
multicast go to each peer's underlay address; the bridge learns the rest). The engine's network
is created on that bridge (netavark's `network_interface`), with the control plane's subnet, and
each container with the control plane's address. `agent.vxlan` does the netlink work and
`agent.peerdns` the name entries; what they change is decided here, without I/O.

Names across hosts: aardvark-dns (the engine's resolver) knows only the containers of its own
host. The agent adds the other hosts' cells of the network to the resolver's configuration of
that network, as entries of its own (`peer_entry`: an id that no container has), and tells the
resolver to reload. netavark edits that file by container id (it appends an entry at a
container's start and drops that container's lines at its stop), so the agent's entries survive
its edits; the agent re-checks them on every overlay pass and after the engine rewrote the file.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_DSTPORT",
    "PEER_ID_PREFIX",
    "VXLAN_OVERHEAD",
    "FdbChange",
    "PeerName",
    "bridge_name",
    "fdb_changes",
    "gateway_interface",
    "gateway_mac",
    "merge_peer_entries",
    "overlay_mtu",
    "peer_entry",
    "vni_of",
    "vxlan_name",
]

DEFAULT_DSTPORT: Final = 4789  # IANA's VXLAN port
VXLAN_OVERHEAD: Final = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
#: Entry ids the agent writes (64 hex characters, like an engine container id, never one:
#: engine ids are random hex and these start with a fixed, non-hex-looking tag in front).
PEER_ID_PREFIX: Final = "cellplane-peer-"
_BRIDGE: Final = "cpbr"
_VXLAN: Final = "cpvx"


def bridge_name(vni: int) -> str:
    """The bridge of the network with this VNI (at most 15 characters, as Linux allows)."""
    return f"{_BRIDGE}{_check(vni)}"


def vxlan_name(vni: int) -> str:
    return f"{_VXLAN}{_check(vni)}"


def vni_of(device: str) -> int | None:
    """The VNI of one of the overlay's devices, None for any other device."""
    for prefix in (_BRIDGE, _VXLAN):
        rest = device.removeprefix(prefix)
        if rest != device and rest.isdigit():
            return int(rest)
    return None


def _check(vni: int) -> int:
    if not 1 <= vni < 1 << 24:
        raise ValueError(f"a VXLAN id is 1 to {(1 << 24) - 1}: {vni}")
    return vni


def gateway_interface(subnet: str) -> tuple[str, int]:
    """The gateway's address on the network's bridge (the subnet's first host) and its prefix.

    The agent puts it on the bridge itself: netavark gives addresses only to bridges it makes,
    and the overlay's bridge is the agent's (made before the engine's network, with the VXLAN
    device in it). The resolver (aardvark-dns) listens on it, and the cells route through it.
    """
    net = ipaddress.ip_network(subnet)
    return str(net.network_address + 1), net.prefixlen


def gateway_mac(vni: int) -> str:
    """The MAC of the network's bridge on every host (an anycast gateway).

    Every host's bridge carries the network's gateway address, so all of them answer a cell's
    ARP for it: with one MAC everywhere, whichever answer a cell keeps, its frames to the gateway
    (its resolver, its way out) stay on its own host, since a bridge delivers frames for its own
    address locally and never floods them to the peers. Locally administered, unicast: 02:63:70
    ("cp") and the VNI's three bytes.
    """
    v = _check(vni)
    return f"02:63:70:{v >> 16 & 0xFF:02x}:{v >> 8 & 0xFF:02x}:{v & 0xFF:02x}"


def overlay_mtu(underlay_mtu: int) -> int:
    """The MTU of the overlay's devices and containers: the underlay's less VXLAN's headers."""
    return underlay_mtu - VXLAN_OVERHEAD


@dataclass(frozen=True)
class FdbChange:
    add: tuple[str, ...]
    remove: tuple[str, ...]


def fdb_changes(have: Iterable[str], want: Iterable[str], local: str) -> FdbChange:
    """The all-zeros FDB entries to add and remove so that exactly `want` (less `local`) remain."""
    wanted = {str(ipaddress.ip_address(a)) for a in want} - {local}
    present = {str(ipaddress.ip_address(a)) for a in have}
    return FdbChange(add=tuple(sorted(wanted - present)), remove=tuple(sorted(present - wanted)))


@dataclass(frozen=True)
class PeerName:
    """A cell on another host: an entry of the resolver's configuration."""

    cell_id: str
    name: str
    address: str
    aliases: tuple[str, ...] = ()  # its further names (a Docker container's short id, aliases)


def peer_entry(peer: PeerName) -> str:
    """The resolver line of a peer cell: `<id> <ipv4> <ipv6> <names>` (no IPv6 here), its name
    first, then its aliases (a name several cells share, as Compose's service name for scaled
    containers, resolves to all of their addresses)."""
    digest = hashlib.sha256(peer.cell_id.encode()).hexdigest()[: 64 - len(PEER_ID_PREFIX)]
    names = ",".join(dict.fromkeys([peer.name, *peer.aliases]))
    return f"{PEER_ID_PREFIX}{digest} {peer.address}  {names}"


def merge_peer_entries(text: str, peers: Sequence[PeerName]) -> str | None:
    """The configuration `text` with exactly `peers` as the agent's entries; None if unchanged.

    The first line (the resolver's listen addresses) and the engine's own entries are kept as
    they are and in order; the agent's entries follow them. A local container of the same name
    wins: a peer entry whose name a local entry has is left out.
    """
    lines = text.splitlines()
    if not lines:
        return None  # the engine has not written the file's header yet: nothing to add to
    head, rest = lines[0], lines[1:]
    engine = [ln for ln in rest if ln.strip() and not ln.startswith(PEER_ID_PREFIX)]
    local_names = {n for ln in engine for n in _names(ln)}
    ours = [peer_entry(p) for p in peers if p.name not in local_names]
    new = "\n".join([head, *engine, *ours]) + "\n"
    return None if new == text else new


def _names(line: str) -> list[str]:
    parts = line.split(" ")
    return parts[3].split(",") if len(parts) >= 4 else []
