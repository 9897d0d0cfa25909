"""The agent's part of the overlay: keep this host's VXLAN devices and peer names current.

`OverlayAgent.prepare` readies a network's bridge and VXLAN device before the engine's network
is made on it (the `Preparer` calls it); `apply` brings every overlay network of the host in line
with the server's view (`wire.Overlay`: peer hosts, their cells) and removes the devices of
networks no local cell uses any more; `run` fetches that view every `interval_s` seconds.
`announce` queues a started cell's gratuitous ARP (`garp`), sent after the next two passes, so
a moved cell is reached at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from cellplane.agent import garp, peerdns, vxlan
from cellplane.agent.overlay import PeerName, bridge_name
from cellplane.drivers.base import NetworkSpec
from cellplane.wire import agent_plain as wire

__all__ = ["OverlayAgent"]

log = structlog.get_logger("cellplane.agent.overlay")

#: How many overlay passes (one every `interval_s`) send a started cell's gratuitous ARP.
ANNOUNCE_PASSES = 2
#: Announcements sent at once (each runs `nsenter` and `arping`, about a second).
GARP_THREADS = 4


@dataclass
class _Announcement:
    cell_id: str
    pid: Callable[[], int | None]
    passes: int


class OverlayAgent:
    def __init__(
        self,
        local: str,
        fetch: Callable[[], wire.Overlay],
        *,
        dstport: int,
        dns_dir: Path,
        interval_s: float = 2.0,
    ) -> None:
        self.local = local
        self.fetch = fetch
        self.dstport = dstport
        self.dns_dir = dns_dir
        self.interval_s = interval_s
        self.mtu = vxlan.underlay_mtu(local)
        self._peers: dict[int, list[str]] = {}  # VNI -> peer hosts, as last told
        # VNI -> subnet, for the networks the engine has (their bridges carry the gateway).
        self._subnets: dict[int, str] = {}
        self._lock = threading.Lock()
        self._announcements: list[_Announcement] = []  # started cells, to announce (`garp`)
        self._garp = ThreadPoolExecutor(GARP_THREADS, thread_name_prefix="cp-garp")

    def announce(self, cell_id: str, pid: Callable[[], int | None]) -> None:
        """Announce the started cell's addresses from its interfaces (`garp`: its peers and
        the other hosts' VXLAN devices learn its new MAC at once). Sent after each of the next
        `ANNOUNCE_PASSES` passes of `run`, not now: a host that has just readied the network has
        no peer hosts on its VXLAN device until the next pass, and the broadcast would reach no
        one. `pid`: its main process (None: it no longer runs, nothing to announce)."""
        with self._lock:
            self._announcements.append(_Announcement(cell_id, pid, ANNOUNCE_PASSES))

    def _due(self) -> list[_Announcement]:
        with self._lock:
            due, self._announcements = self._announcements, []
        return due

    def _announce(self, a: _Announcement) -> None:
        """Send one announcement (on the pool: arping takes a second); keep it while it has
        passes left. A failure is logged only: the cell runs either way, and its peers find
        its new MAC when they probe again."""
        a.passes -= 1
        try:
            process = a.pid()
            if process is None:
                return
            done = garp.announce(process)
        except garp.AnnounceError as exc:
            log.warning("gratuitous ARP not sent", cell=a.cell_id, error=str(exc))
            return
        log.info("gratuitous ARP sent", cell=a.cell_id, addresses=done, passes_left=a.passes)
        if a.passes > 0:
            with self._lock:
                self._announcements.append(a)

    def network_spec(self, spec: NetworkSpec, net: wire.NetworkDescription) -> NetworkSpec:
        """`spec` on the overlay: the control plane's subnet, on the network's own bridge."""
        if net.vni is None or net.subnet is None:
            return spec
        return NetworkSpec(
            name=spec.name,
            driver="bridge",
            subnet=net.subnet,
            labels=dict(spec.labels),
            internal=spec.internal,
            interface=bridge_name(net.vni),
            mtu=vxlan.overlay_mtu(self.mtu),
        )

    def prepare(self, net: wire.NetworkDescription) -> None:
        """The network's bridge and VXLAN device, before the engine's network is made on them.

        No address yet: the engine refuses a network whose subnet a host interface already has.
        """
        if net.vni is None:
            return
        with self._lock:
            self._ensure(net.vni, self._peers.get(net.vni, []), net.subnet)

    def ready(self, net: wire.NetworkDescription) -> None:
        """The engine's network exists: the bridge gets the gateway address (netavark gives one
        only to a bridge it makes), now and on every later pass."""
        if net.vni is None or net.subnet is None:
            return
        with self._lock:
            self._subnets[net.vni] = net.subnet
            self._ensure(net.vni, self._peers.get(net.vni, []), net.subnet)

    def _ensure(self, vni: int, peers: list[str], subnet: str | None) -> None:
        vxlan.ensure(
            vni,
            self.local,
            peers,
            dstport=self.dstport,
            mtu=self.mtu,
            subnet=subnet if vni in self._subnets else None,
        )

    def apply(self, overlay: wire.Overlay) -> None:
        wanted = {n.vni for n in overlay.networks}
        with self._lock:
            for n in overlay.networks:
                self._ensure(n.vni, list(n.peers), n.subnet)
                self._peers[n.vni] = list(n.peers)
            for vni in vxlan.present() - wanted:
                vxlan.remove(vni)
                self._peers.pop(vni, None)
                self._subnets.pop(vni, None)
        for n in overlay.networks:
            names = [PeerName(c.cell_id, c.name, c.address, tuple(c.aliases)) for c in n.cells]
            if peerdns.sync(self.dns_dir, n.name, names):
                log.info("peer names updated", network=n.name, cells=len(names))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.run_once()
            stop.wait(self.interval_s)
        self._garp.shutdown(wait=False, cancel_futures=True)

    def run_once(self) -> None:
        """One pass: fetch the view and apply it, then send the announcements queued before it
        (its view has the peers of their networks)."""
        due = self._due()
        try:
            self.apply(self.fetch())
        except Exception as exc:  # the next pass tries again; the reason is logged
            log.warning("overlay pass failed", error=str(exc))
            with self._lock:
                self._announcements = due + self._announcements
            return
        for a in due:
            self._garp.submit(self._announce, a)
