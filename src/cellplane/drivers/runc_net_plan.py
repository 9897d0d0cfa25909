"""The runc driver's networking as pure decisions: names, addresses, resolver lines, rules.

`drivers.runc_net` does the I/O (netlink, namespaces, iptables, files); everything it decides
is computed here without touching the system, so the unit tests pin it.

- Device names: a network's own bridge is `cpn` + 10 hex digits of its name's hash, a cell's
  host-side veth `cpv` + 11 of its container id's (at most 15 characters, as Linux allows; never
  `cpbr<digits>`/`cpvx<digits>`, the overlay's, which the overlay agent removes when unused).
- Addresses: the gateway is the subnet's first host; cells get the lowest free one after it.
- Resolver: one aardvark-dns configuration file per network (first line: the gateway, where
  it listens; then `<id> <ipv4> <ipv6> <name>[,<alias>...]`, no IPv6 here).
- Firewall: rules in chains of our own, one per driver instance (named from its run dir), each
  rule tagged with a comment naming its network so that it goes with the network.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cellplane.drivers.podman_bodies import sized_candidates

__all__ = [
    "DEFAULT_PREFIX",
    "RUNC_SUBNET_POOLS",
    "Chains",
    "Rule",
    "bridge_name",
    "chains_for",
    "check_address",
    "check_id",
    "check_network_name",
    "dns_entry",
    "filter_rules",
    "first_free",
    "gateway_of",
    "listen_addresses",
    "merge_entry",
    "nat_rules",
    "pick_subnet",
    "rebound",
    "resolv_conf",
    "rule_comment",
    "udp_listeners",
    "veth_name",
]

#: Where a network without a control-plane subnet gets one: apart from the control plane's
#: 10.128.0.0/9 and from the podman driver's pools (10.89.0.0/16 to 10.127.255.255).
RUNC_SUBNET_POOLS: Final[tuple[str, ...]] = ("10.40.0.0/13", "10.48.0.0/12")
DEFAULT_PREFIX: Final = 24
COMMENT_PREFIX: Final = "cprunc:"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_network_name(name: str) -> str:
    """A network name usable as a file name and in a rule comment; ValueError naming it if not."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"network name {name!r}: 1 to 128 of letters, digits, '_', '.', '-' "
            "(not starting with a punctuation mark)"
        )
    return name


def check_id(container_id: str) -> str:
    """A container id usable as a file name; ValueError naming it if not."""
    if not _NAME.fullmatch(container_id):
        raise ValueError(f"container id {container_id!r}: 1 to 128 of letters, digits, '_.-'")
    return container_id


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def bridge_name(network: str) -> str:
    """The bridge the driver makes for `network` (when the overlay gave none)."""
    return f"cpn{_hex(network, 10)}"


def veth_name(container_id: str) -> str:
    """The host end of a cell's veth pair (the other end is `eth0` in its namespace)."""
    return f"cpv{_hex(container_id, 11)}"


def gateway_of(subnet: str) -> tuple[str, int]:
    """The gateway of `subnet` (its first host) and the prefix length."""
    net = ipaddress.ip_network(subnet)
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 30:
        raise ValueError(f"subnet {subnet}: an IPv4 network of at most /30")
    return str(net.network_address + 1), net.prefixlen


def first_free(subnet: str, taken: Iterable[str]) -> str | None:
    """The lowest address of `subnet` after the gateway that is not `taken`; None if full."""
    net = ipaddress.IPv4Network(subnet)
    used = {int(ipaddress.IPv4Address(a)) for a in taken}
    low, high = int(net.network_address) + 2, int(net.broadcast_address) - 1
    for value in range(low, high + 1):
        if value not in used:
            return str(ipaddress.IPv4Address(value))
    return None


def check_address(subnet: str, address: str) -> str:
    """`address` as a cell's address on `subnet`; ValueError naming the problem if it is not."""
    net = ipaddress.IPv4Network(subnet)
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError as exc:
        raise ValueError(f"address {address!r} is not an IPv4 address") from exc
    if ip not in net:
        raise ValueError(f"address {address} is not in subnet {subnet}")
    if ip in (net.network_address, net.broadcast_address, net.network_address + 1):
        raise ValueError(f"address {address} is the network, broadcast or gateway of {subnet}")
    return str(ip)


def pick_subnet(
    pools: Sequence[str], prefix: int, used: Iterable[ipaddress.IPv4Network]
) -> ipaddress.IPv4Network | None:
    """The first `prefix` block of `pools` overlapping none of `used`; None if all are taken."""
    for candidate in sized_candidates(pools, prefix, list(used)):
        return candidate
    return None


def dns_entry(container_id: str, address: str, name: str, aliases: Sequence[str]) -> str:
    """The resolver line of one cell: `<id> <ipv4> <ipv6> <names>` (no IPv6: empty field)."""
    names = [name, *(a for a in aliases if a != name)]
    for n in names:
        if not n or any(c in n for c in " ,\n\t"):
            raise ValueError(f"name {n!r}: no blanks or commas, not empty")
    return f"{container_id} {address}  {','.join(names)}"


def merge_entry(text: str, header: str, container_id: str, line: str | None) -> str:
    """The configuration `text` with `container_id`'s line replaced by `line` (None: removed).

    The first line is the listen address `header`; other containers' lines stay in order.
    """
    rest = text.splitlines()[1:]
    kept = [ln for ln in rest if ln.strip() and ln.split(" ", 1)[0] != container_id]
    if line is not None:
        kept.append(line)
    return "\n".join([header, *kept]) + "\n"


def listen_addresses(headers: Iterable[str]) -> set[str]:
    """The IPv4 addresses a resolver listens on, from its files' first lines (netavark writes
    a comma-separated list there, IPv6 ones included, and newer ones the network's upstream
    servers after a blank; the runc driver one gateway)."""
    found: set[str] = set()
    for header in headers:
        fields = header.split()
        for item in fields[0].split(",") if fields else ():
            try:
                address = ipaddress.ip_address(item.strip())
            except ValueError:
                continue
            if address.version == 4:
                found.add(str(address))
    return found


def udp_listeners(proc_net_udp: str, port: int) -> dict[str, int]:
    """Local IPv4 address -> socket inode of the UDP sockets bound to `port`, from the text of
    `/proc/<pid>/net/udp` (addresses are the kernel's 32-bit value in hex, in host byte order)."""
    found: dict[str, int] = {}
    for line in proc_net_udp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or ":" not in fields[1]:
            continue
        hex_address, hex_port = fields[1].split(":", 1)
        try:
            if int(hex_port, 16) != port:
                continue
            raw = int(hex_address, 16).to_bytes(4, sys.byteorder)
            found[str(ipaddress.IPv4Address(raw))] = int(fields[9])
        except (ValueError, OverflowError):
            continue
    return found


def rebound(now: dict[str, int], want: set[str], before: set[int]) -> bool:
    """Whether a resolver that held the sockets `before` has bound every address in `want`
    anew: aardvark-dns (1.4) closes all its sockets on a reload and binds them again, and
    answers nothing between."""
    return all(address in now and now[address] not in before for address in want)


def resolv_conf(gateway: str) -> str:
    """A cell's /etc/resolv.conf: the resolver on its network's gateway."""
    return f"nameserver {gateway}\noptions timeout:1 attempts:2\n"


@dataclass(frozen=True)
class Chains:
    """The driver instance's own chains: `forward` (filter table), `postrouting` (nat)."""

    forward: str
    postrouting: str


def chains_for(instance: str) -> Chains:
    """The chains of the driver instance keyed by `instance` (its run dir)."""
    tag = _hex(instance, 8).upper()
    return Chains(forward=f"CPRUNC-{tag}-FWD", postrouting=f"CPRUNC-{tag}-NAT")


def rule_comment(network: str) -> str:
    return f"{COMMENT_PREFIX}{network}"


@dataclass(frozen=True)
class Rule:
    """One iptables rule: `table`, `chain`, whether it goes at the top (`first`), its match."""

    table: str
    chain: str
    first: bool
    spec: tuple[str, ...]


def filter_rules(chains: Chains, network: str, bridge: str, internal: bool) -> list[Rule]:
    """The forwarding rules of one network, in the order they must be added.

    Into the bridge from anywhere else only replies pass (another network's cells, the other
    engines' and the outside cannot open a connection to a cell): those rules go at the top of
    the chain, ahead of every network's way out, so no network's `accept out` lets its traffic
    into another. Inside the bridge all passes. Out of it: dropped if `internal`, else accepted.
    """
    tag = ("-m", "comment", "--comment", rule_comment(network))
    c = chains.forward
    top = [
        ("-i", bridge, "-o", bridge, *tag, "-j", "ACCEPT"),
        ("-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "ACCEPT"),
        ("-o", bridge, *tag, "-j", "DROP"),
    ]
    # Inserted at position 1 one after the other: the last inserted ends up first.
    rules = [Rule("filter", c, True, spec) for spec in reversed(top)]
    out = "DROP" if internal else "ACCEPT"
    rules.append(Rule("filter", c, False, ("-i", bridge, *tag, "-j", out)))
    return rules


def nat_rules(chains: Chains, network: str, subnet: str, internal: bool) -> list[Rule]:
    """Masquerade for the way out (none for an `internal` network)."""
    if internal:
        return []
    tag = ("-m", "comment", "--comment", rule_comment(network))
    spec = ("-s", subnet, "!", "-d", subnet, *tag, "-j", "MASQUERADE")
    return [Rule("nat", chains.postrouting, False, spec)]
