"""Isolation of one engine's networks from each other that does not come and go with containers.

The engine's networks are made with netavark's `isolate` option. netavark 1.4 (Debian 12's)
enforces it with one jump from FORWARD to its NETAVARK_ISOLATION_1 chain that every isolated
network shares, and removes that jump at the complete teardown of any isolated network (its last
container leaving). From then until the next container starts on an isolated network, cells of
different networks reach each other: measured here, a cell of network A got an HTTP answer from
a cell of network B once the only container of a third network C was removed, and none before.

So the podman driver keeps two chains of its own in the filter table, named from its engine's
URL, holding nothing that a container's start or removal changes:

- ``CPNET-<tag>-ISO1``, jumped to first from FORWARD: ``-i B ! -o B -j CPNET-<tag>-ISO2`` for
  each isolated network's bridge B (traffic leaving B for another interface);
- ``CPNET-<tag>-ISO2``: ``-o B -j DROP`` for each such bridge (into another isolated network).

Traffic between the cells of one network, from a cell to the outside, and into a cell from the
outside (published ports) is not matched. The rules are rebuilt from the engine's networks
whenever the driver makes or removes one: new rules are added before stale ones go, so there is
no moment without them. The chains and their jump go with the engine's last isolated network,
or with the engine itself (`PodmanService.destroy`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cellplane.drivers.runc_net_fw import chain_rules, iptables

__all__ = ["GuardChains", "NetworkGuard", "guard_rules", "isolated_bridges"]

_JUMP_COMMENT = "cellplane network isolation"


@dataclass(frozen=True)
class GuardChains:
    """The two chains of one engine (`for_engine`)."""

    leave: str  # ISO1: jumped to from FORWARD
    enter: str  # ISO2: the drops

    @classmethod
    def for_engine(cls, engine_url: str) -> GuardChains:
        tag = hashlib.sha256(engine_url.encode()).hexdigest()[:8].upper()
        return cls(leave=f"CPNET-{tag}-ISO1", enter=f"CPNET-{tag}-ISO2")


def isolated_bridges(networks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The bridges of the networks (libpod's `GET /networks/json` items) made with `isolate`."""
    found = {
        str(n["network_interface"])
        for n in networks
        if n.get("driver") == "bridge"
        and n.get("network_interface")
        and str((n.get("options") or {}).get("isolate", "")).lower() in ("true", "strict")
    }
    return sorted(found)


def guard_rules(chains: GuardChains, bridges: Sequence[str]) -> dict[str, list[list[str]]]:
    """Each chain's rules for `bridges`, as `iptables -S` prints them (after `-A <chain>`)."""
    return {
        chains.leave: [["-i", b, "!", "-o", b, "-j", chains.enter] for b in bridges],
        chains.enter: [["-o", b, "-j", "DROP"] for b in bridges],
    }


class NetworkGuard:
    """The chains of one engine, kept equal to `guard_rules` of its isolated bridges."""

    def __init__(self, engine_url: str) -> None:
        self.chains = GuardChains.for_engine(engine_url)
        self._lock = threading.Lock()

    def sync(self, bridges: Sequence[str]) -> None:
        with self._lock:
            wanted = guard_rules(self.chains, bridges)
            if bridges:
                # The drops first, then what leads to them, then the jump: always consistent.
                for chain in (self.chains.enter, self.chains.leave):
                    self._add(chain, wanted[chain])
                self._ensure_jump()
            for chain in (self.chains.leave, self.chains.enter):
                for rule in chain_rules("filter", chain):
                    if rule[2:] not in wanted[chain]:
                        iptables(["-t", "filter", "-D", chain, *rule[2:]], check=False)
            if not bridges:
                self._drop()

    def remove(self) -> None:
        """Drop the chains and their jump, if there are any: for an engine that goes away with
        its networks still defined (its data directory removed), which `sync` never hears of."""
        with self._lock:
            if iptables(["-t", "filter", "-S", self.chains.leave], check=False).returncode == 0:
                self._drop()

    def _add(self, chain: str, rules: list[list[str]]) -> None:
        if iptables(["-t", "filter", "-S", chain], check=False).returncode != 0:
            iptables(["-t", "filter", "-N", chain], check=False)  # made meanwhile: fine
        have = [r[2:] for r in chain_rules("filter", chain)]
        for rule in rules:
            if rule not in have:
                iptables(["-t", "filter", "-A", chain, *rule])

    def _jump(self) -> list[str]:
        return ["-m", "comment", "--comment", _JUMP_COMMENT, "-j", self.chains.leave]

    def _ensure_jump(self) -> None:
        if iptables(["-t", "filter", "-C", "FORWARD", *self._jump()], check=False).returncode:
            iptables(["-t", "filter", "-I", "FORWARD", "1", *self._jump()])

    def _drop(self) -> None:
        while (
            iptables(["-t", "filter", "-D", "FORWARD", *self._jump()], check=False).returncode == 0
        ):
            pass
        for chain in (self.chains.leave, self.chains.enter):
            iptables(["-t", "filter", "-F", chain], check=False)
            iptables(["-t", "filter", "-X", chain], check=False)
