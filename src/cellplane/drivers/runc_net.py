"""Networks of the direct-runc driver: bridges, namespaces, addresses, names, isolation.

`RuncNetworks` realises the project networks on this host without an engine: a Linux bridge per
network (or the overlay's `cpbr<VNI>` when `NetworkSpec.interface` names it: used, never
deleted) carrying the gateway (the subnet's first host; on the overlay's bridge also its
anycast MAC, docs/networks.md), rules of our own for isolation and masquerade
(`runc_net_fw`), one aardvark-dns for names (`runc_net_dns`), and per cell a network namespace
bound under the run dir with a veth pair into the bridge (`runc_net_ns`).

Everything it made is recorded under `run_dir`, so a restarted agent finds it again (`adopt`):

    networks/<name>.json     the network (subnet, bridge, whether the bridge is ours, ...)
    ipam/<name>/<address>    one file per address in use, holding the container id
    attached/<id>.json       one cell's attachment;   netns/<id>  its namespace (a bind mount)
    aardvark-dns/<name>      the resolver's files;    aardvark.lock, aardvark.log beside them

Thread-safe: one lock per instance for network changes, file locks for addresses (several
attaches of one network may run at once from other threads).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cellplane.agent.overlay import gateway_mac, vni_of
from cellplane.drivers import errors, runc_net_fw
from cellplane.drivers.base import NetworkSpec
from cellplane.drivers.runc_net_dns import Resolver
from cellplane.drivers.runc_net_ns import (
    NsSetup,
    drop_namespace,
    make_namespace,
    mounted_namespaces,
)
from cellplane.drivers.runc_net_plan import (
    DEFAULT_PREFIX,
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
    nat_rules,
    pick_subnet,
    resolv_conf,
    veth_name,
)

__all__ = ["Attachment", "RuncNetworks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attachment:
    """A cell's place on a network: the namespace to run it in, and its address there."""

    netns_path: str
    address: str


@dataclass(frozen=True)
class _Net:
    name: str
    subnet: str
    bridge: str
    own_bridge: bool
    internal: bool
    mtu: int | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Att:
    container_id: str
    network: str
    address: str
    netns_path: str
    name: str
    aliases: list[str] = field(default_factory=list)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


def _forwarding_off() -> bool:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    return False


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class RuncNetworks:
    """The runc driver's networks on this host, their state under `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        *,
        subnet_pools: Sequence[str] = RUNC_SUBNET_POOLS,
        resolver_binary: str | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.subnet_pools = tuple(str(ipaddress.IPv4Network(p)) for p in subnet_pools)
        for sub in ("networks", "ipam", "attached", "netns"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._chains = chains_for(str(self.run_dir))
        self._resolver = Resolver(self.run_dir, resolver_binary)
        self._lock = threading.RLock()
        self._host_lock = threading.Lock()
        self._ipr: IPRoute | None = None
        self._nets: dict[str, _Net] = {}
        self._atts: dict[str, _Att] = {}
        self._ready: set[str] = set()  # networks whose devices and rules were checked
        self._load()

    # -- state ---------------------------------------------------------------------------

    def _load(self) -> None:
        nets: dict[str, _Net] = {}
        for path in (self.run_dir / "networks").glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                net = _Net(**json.loads(path.read_text()))
                nets[net.name] = net
        atts: dict[str, _Att] = {}
        for path in (self.run_dir / "attached").glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                att = _Att(**json.loads(path.read_text()))
                atts[att.container_id] = att
        with self._lock:
            self._nets, self._atts, self._ready = nets, atts, set()

    def adopt(self) -> None:
        """After an agent restart: state from `run_dir`, devices, rules and resolver checked."""
        self._load()
        with self._lock:
            for net in list(self._nets.values()):
                self._realise(net)
            mounted = mounted_namespaces(self.run_dir / "netns")
            stale = [cid for cid, a in self._atts.items() if a.netns_path not in mounted]
        for cid in stale:  # its namespace went (a reboot): so did the cell; its address is free
            self.detach(cid)
        self._resolver.reload()

    def _host(self) -> IPRoute:
        with self._host_lock:
            if self._ipr is None:
                self._ipr = IPRoute()
            return self._ipr

    def close(self) -> None:
        """Drop the netlink socket (the networks stay)."""
        with self._host_lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    # -- networks ------------------------------------------------------------------------

    def ensure_network(self, spec: NetworkSpec) -> None:
        try:
            check_network_name(spec.name)
            if spec.subnet is not None:
                gateway_of(spec.subnet)
        except ValueError as exc:
            raise errors.PermanentDriverError(str(exc)) from exc
        with self._lock:
            have = self._nets.get(spec.name)
            if have is not None and not self._same(have, spec):
                if self._users(spec.name):
                    raise errors.PermanentDriverError(
                        f"network {spec.name} is in use as it is (subnet {have.subnet}, bridge "
                        f"{have.bridge}, internal {have.internal}, mtu {have.mtu}); it cannot be "
                        "made again as asked while containers use it"
                    )
                self._remove(have)
                have = None
            if have is None:
                have = self._record(spec)
            if spec.name not in self._ready:
                self._realise(have)

    @staticmethod
    def _same(net: _Net, spec: NetworkSpec) -> bool:
        size = ipaddress.IPv4Network(net.subnet).prefixlen
        return (
            (spec.subnet is None or str(ipaddress.IPv4Network(spec.subnet)) == net.subnet)
            and (spec.prefix_length is None or spec.prefix_length == size)
            and (spec.interface or bridge_name(spec.name)) == net.bridge
            and spec.internal == net.internal
            and spec.mtu == net.mtu
        )

    def _record(self, spec: NetworkSpec) -> _Net:
        """The network's subnet (the spec's, or a free one from the pools), persisted."""
        with _flock(self.run_dir / "subnets.lock"):
            if spec.subnet is not None:
                subnet = str(ipaddress.IPv4Network(spec.subnet))
            else:
                subnet = self._free_subnet(spec.prefix_length or DEFAULT_PREFIX, spec.name)
            net = _Net(
                name=spec.name,
                subnet=subnet,
                bridge=spec.interface or bridge_name(spec.name),
                own_bridge=spec.interface is None,
                internal=spec.internal,
                mtu=spec.mtu,
                labels=dict(spec.labels),
            )
            _write_json(self.run_dir / "networks" / f"{spec.name}.json", asdict(net))
        (self.run_dir / "ipam" / spec.name).mkdir(exist_ok=True)
        self._nets[spec.name] = net
        return net

    def _free_subnet(self, prefix: int, name: str) -> str:
        used: list[ipaddress.IPv4Network] = [
            ipaddress.IPv4Network(n.subnet) for n in self._nets.values()
        ]
        with self._host_lock:
            ipr = self._ipr or IPRoute()
            try:
                for a in ipr.get_addr(family=2):
                    iface = f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    used.append(ipaddress.IPv4Interface(iface).network)
            finally:
                if ipr is not self._ipr:
                    ipr.close()
        found = pick_subnet(self.subnet_pools, prefix, used)
        if found is None:
            raise errors.PermanentDriverError(
                f"no free /{prefix} subnet for network {name} in {', '.join(self.subnet_pools)}"
            )
        return str(found)

    def _realise(self, net: _Net) -> None:
        """Bridge, gateway, rules and resolver file of `net`, as they must be (idempotent)."""
        gateway, prefixlen = gateway_of(net.subnet)
        ipr = self._host()
        try:
            with self._host_lock:
                found = ipr.link_lookup(ifname=net.bridge)
                if not found and not net.own_bridge:
                    raise errors.PermanentDriverError(
                        f"network {net.name}: bridge {net.bridge} (the overlay's) does not exist"
                    )
                created = not found
                if created:
                    with contextlib.suppress(NetlinkError):  # made meanwhile
                        ipr.link("add", ifname=net.bridge, kind="bridge")
                    found = ipr.link_lookup(ifname=net.bridge)
                idx = int(found[0])
                link = ipr.get_links(idx)[0]
                changes: dict[str, Any] = {}
                if created:  # (only its own bridge is made) its own address, set: see `bridge_pin`
                    changes["address"] = link.get_attr("IFLA_ADDRESS")
                vni = vni_of(net.bridge)
                mac = None if net.own_bridge or vni is None else gateway_mac(vni)
                if mac is not None and link.get_attr("IFLA_ADDRESS") != mac:
                    changes["address"] = mac
                if net.own_bridge and net.mtu is not None and link.get_attr("IFLA_MTU") != net.mtu:
                    changes["mtu"] = net.mtu
                if changes:
                    ipr.link("set", index=idx, **changes)
                ipr.link("set", index=idx, state="up")
                addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
                if gateway not in addrs:
                    ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        except NetlinkError as exc:
            raise errors.PermanentDriverError(f"network {net.name} ({net.bridge}): {exc}") from exc
        rules = filter_rules(self._chains, net.name, net.bridge, net.internal)
        rules += nat_rules(self._chains, net.name, net.subnet, net.internal)
        runc_net_fw.apply(self._chains, net.name, rules)
        if not net.internal and _forwarding_off():
            log.warning(
                "network %s: IPv4 forwarding is off on this host (net.ipv4.ip_forward=0): its "
                "cells have no way out; the agent does not change the host's settings",
                net.name,
            )
        self._resolver.set_network(net.name, gateway)
        self._ready.add(net.name)

    def _users(self, network: str) -> list[str]:
        return sorted(a.container_id for a in self._atts.values() if a.network == network)

    def remove_network(self, name: str) -> None:
        with self._lock:
            users = self._users(name)
            if users:
                raise errors.PermanentDriverError(
                    f"network {name} is in use by {len(users)} container(s): {', '.join(users[:5])}"
                )
            net = self._nets.get(name)
            if net is None:
                try:
                    check_network_name(name)
                except ValueError:
                    return  # never one of ours
                # Nothing recorded: what a crash may have left (rules, the resolver's file, a
                # bridge of our naming) still goes.
                net = _Net(name, "", bridge_name(name), True, False, None)
            self._remove(net)

    def _remove(self, net: _Net) -> None:
        runc_net_fw.remove(self._chains, net.name)
        self._resolver.remove_network(net.name)
        if net.own_bridge:
            with self._host_lock:
                ipr = self._host_unlocked()
                found = ipr.link_lookup(ifname=net.bridge)
                if found:
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=found[0])
        # The overlay's bridge, its gateway address and MAC stay: the overlay agent owns them.
        shutil.rmtree(self.run_dir / "ipam" / net.name, ignore_errors=True)
        (self.run_dir / "ipam" / f"{net.name}.lock").unlink(missing_ok=True)
        (self.run_dir / "networks" / f"{net.name}.json").unlink(missing_ok=True)
        self._nets.pop(net.name, None)
        self._ready.discard(net.name)

    def _host_unlocked(self) -> IPRoute:
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def list_networks(self, labels: dict[str, str]) -> list[str]:
        with self._lock:
            return sorted(
                n.name
                for n in self._nets.values()
                if all(n.labels.get(k) == v for k, v in labels.items())
            )

    def subnet(self, network: str) -> str:
        """The subnet of `network` (the control plane's, or the one allocated here)."""
        return self._net(network).subnet

    def resolv_conf(self, network: str) -> str:
        return resolv_conf(gateway_of(self._net(network).subnet)[0])

    def _net(self, network: str) -> _Net:
        with self._lock:
            net = self._nets.get(network)
        if net is None:
            raise errors.NetworkNotFound(f"network {network} does not exist on this host")
        return net

    # -- cells ---------------------------------------------------------------------------

    def attach(
        self,
        container_id: str,
        network: str,
        address: str | None,
        name: str,
        aliases: list[str],
        *,
        settle: bool = True,
    ) -> Attachment:
        """Make the cell's namespace on `network` with `address` (None: the lowest free).

        Its name is served when this returns; `settle=False`: once `settle_names` returns (the
        resolver rebinds meanwhile: the driver waits after the container's start)."""
        net = self._net(network)
        try:
            check_id(container_id)
            if address is not None:
                address = check_address(net.subnet, address)
            dns_entry(container_id, "0.0.0.0", name, aliases)  # names checked before any change
        except ValueError as exc:
            raise errors.PermanentDriverError(f"attach {container_id} to {network}: {exc}") from exc
        with self._lock:
            have = self._atts.get(container_id)
        if have is not None and have.netns_path not in mounted_namespaces(
            Path(have.netns_path).parent
        ):
            self.detach(container_id)  # its namespace went (a reboot): made again below
            have = None
        if have is not None:
            if have.network == network and address in (None, have.address):
                return Attachment(netns_path=have.netns_path, address=have.address)
            raise errors.PermanentDriverError(
                f"container {container_id} is attached already ({have.network}, {have.address})"
            )
        address = self._reserve(net, container_id, address)
        gateway, prefixlen = gateway_of(net.subnet)
        path = self.run_dir / "netns" / container_id
        att = _Att(container_id, network, address, str(path), name, list(aliases))
        record = self.run_dir / "attached" / f"{container_id}.json"
        try:
            _write_json(record, asdict(att))  # first: a crash from here on is undone by detach
            ipr = self._host()
            with self._host_lock:
                found = ipr.link_lookup(ifname=net.bridge)
            if not found:
                raise errors.PermanentDriverError(
                    f"network {network}: its bridge {net.bridge} is gone (ensure the network)"
                )
            setup = NsSetup(
                path=path,
                veth=veth_name(container_id),
                bridge=int(found[0]),
                address=address,
                prefixlen=prefixlen,
                gateway=gateway,
                mtu=net.mtu,
            )
            make_namespace(setup, ipr, self._host_lock)
            with self._lock:
                self._atts[container_id] = att
            self._resolver.set_entry(
                network,
                container_id,
                dns_entry(container_id, address, name, aliases),
                wait=settle,
            )
        except BaseException as exc:
            with self._lock:
                self._atts.pop(container_id, None)
            drop_namespace(path)
            self._release(network, address, container_id)
            record.unlink(missing_ok=True)
            if isinstance(exc, errors.DriverError):
                raise
            if isinstance(exc, (OSError, NetlinkError)):
                raise errors.PermanentDriverError(
                    f"attach {container_id} to {network}: {exc}"
                ) from exc
            raise
        return Attachment(netns_path=str(path), address=address)

    def _reserve(self, net: _Net, container_id: str, address: str | None) -> str:
        """Take `address` (None: the lowest free) for `container_id` in the network's ipam."""
        pool = self.run_dir / "ipam" / net.name
        pool.mkdir(exist_ok=True)
        with _flock(self.run_dir / "ipam" / f"{net.name}.lock"):
            if address is None:
                address = first_free(net.subnet, os.listdir(pool))
                if address is None:
                    raise errors.AddressesExhausted(f"IPAM: no free address in {net.name}")
            slot = pool / address
            try:
                owner = slot.read_text()
            except FileNotFoundError:
                slot.write_text(container_id)
                return address
            if owner != container_id:
                raise errors.PermanentDriverError(
                    f"address {address} on {net.name} is in use by container {owner}"
                )
            return address

    def _release(self, network: str, address: str, container_id: str) -> None:
        slot = self.run_dir / "ipam" / network / address
        with contextlib.suppress(OSError):
            if slot.read_text() == container_id:
                slot.unlink()

    def detach(self, container_id: str) -> None:
        """Drop the cell's namespace (its veth goes with it), address and name; idempotent."""
        try:
            check_id(container_id)
        except ValueError as exc:
            raise errors.PermanentDriverError(str(exc)) from exc
        with self._lock:
            att = self._atts.pop(container_id, None)
        record = self.run_dir / "attached" / f"{container_id}.json"
        if att is None:
            with contextlib.suppress(OSError, ValueError, TypeError):
                att = _Att(**json.loads(record.read_text()))
        try:
            drop_namespace(self.run_dir / "netns" / container_id)
        except OSError as exc:
            raise errors.PermanentDriverError(f"detach {container_id}: {exc}") from exc
        if att is not None:
            self._release(att.network, att.address, container_id)
            self._resolver.set_entry(att.network, container_id, None)
        record.unlink(missing_ok=True)

    def settle_names(self) -> None:
        """Return once the names of every cell attached so far are served. Never raises: a
        resolver that cannot be started again is logged (the cells run, their names do not
        resolve), as when it does not rebind in time."""
        try:
            self._resolver.settle()
        except errors.DriverError as exc:
            log.warning("names on runc networks are not served: %s", exc)

    def resolver_pid(self) -> int | None:
        """The pid of this instance's aardvark-dns, None while none runs."""
        return self._resolver.pid()

    def attachments(self) -> dict[str, Attachment]:
        """The attached cells (container id -> attachment), as recorded."""
        with self._lock:
            return {
                cid: Attachment(netns_path=a.netns_path, address=a.address)
                for cid, a in self._atts.items()
            }
