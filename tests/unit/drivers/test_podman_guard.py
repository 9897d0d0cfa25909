"""The podman driver's own isolation chains (`drivers.podman_guard`): which bridges they cover,
their rules, and how a sync adds before it removes (iptables replaced by a recorder)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

from cellplane.drivers import podman_guard
from cellplane.drivers.podman_guard import GuardChains, NetworkGuard, guard_rules, isolated_bridges


def net(name: str, bridge: str, isolate: str | None = "true", driver: str = "bridge") -> Any:
    options = {} if isolate is None else {"isolate": isolate}
    return {"name": name, "driver": driver, "network_interface": bridge, "options": options}


def test_only_isolated_bridge_networks_are_guarded_once_each_in_order() -> None:
    networks = [
        net("podman", "podman0", isolate=None),  # the engine's default network
        net("p-b", "podman2"),
        net("p-a", "podman1", isolate="strict"),
        net("mac", "eth0", driver="macvlan"),
        net("p-a-again", "podman1"),
        {"name": "odd", "driver": "bridge", "options": {"isolate": "true"}},  # no interface
        net("off", "podman3", isolate="false"),
    ]
    assert isolated_bridges(networks) == ["podman1", "podman2"]


def test_chain_names_are_per_engine_and_fit_iptables() -> None:
    one, two = GuardChains.for_engine("unix:///a.sock"), GuardChains.for_engine("unix:///b.sock")
    assert one != two and one == GuardChains.for_engine("unix:///a.sock")
    assert all(len(c) <= 28 for c in (one.leave, one.enter))


def test_rules_send_leaving_traffic_to_the_drops_into_each_bridge() -> None:
    c = GuardChains(leave="L", enter="E")
    assert guard_rules(c, ["b1", "b2"]) == {
        "L": [["-i", "b1", "!", "-o", "b1", "-j", "E"], ["-i", "b2", "!", "-o", "b2", "-j", "E"]],
        "E": [["-o", "b1", "-j", "DROP"], ["-o", "b2", "-j", "DROP"]],
    }
    assert guard_rules(c, []) == {"L": [], "E": []}


class FakeTables:
    """An iptables filter table: chains of rules, and the commands run, in order."""

    def __init__(self) -> None:
        self.chains: dict[str, list[list[str]]] = {"FORWARD": []}
        self.log: list[list[str]] = []

    def run(self, args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        a = list(args)
        assert a[:2] == ["-t", "filter"]
        op, chain, rule = a[2], a[3], a[4:]
        self.log.append([op, chain, *rule])
        ok, out = True, ""
        if op == "-N":
            ok = chain not in self.chains
            self.chains.setdefault(chain, [])
        elif op == "-S":
            ok = chain in self.chains
            out = "".join(f"-A {chain} {' '.join(r)}\n" for r in self.chains.get(chain, []))
        elif op == "-A":
            self.chains[chain].append(rule)
        elif op == "-I":
            self.chains[chain].insert(int(rule[0]) - 1, rule[1:])
        elif op in ("-C", "-D"):
            ok = rule in self.chains.get(chain, [])
            if op == "-D" and ok:
                self.chains[chain].remove(rule)
        elif op == "-F":
            self.chains[chain] = []
        elif op == "-X":
            ok = self.chains.pop(chain, None) is not None
        if check and not ok:
            raise AssertionError(f"iptables {a} failed")
        return subprocess.CompletedProcess(a, 0 if ok else 1, out, "")


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch) -> FakeTables:
    fake = FakeTables()
    monkeypatch.setattr(podman_guard, "iptables", fake.run)
    monkeypatch.setattr(
        podman_guard,
        "chain_rules",
        lambda table, chain: [["-A", chain, *r] for r in fake.chains.get(chain, [])],
    )
    return fake


def test_sync_builds_the_chains_and_the_jump_first_in_forward(tables: FakeTables) -> None:
    tables.chains["FORWARD"].append(["-j", "NETAVARK_FORWARD"])
    guard = NetworkGuard("unix:///e.sock")
    c = guard.chains
    guard.sync(["podman1", "podman2"])
    assert tables.chains[c.leave] == guard_rules(c, ["podman1", "podman2"])[c.leave]
    assert tables.chains[c.enter] == guard_rules(c, ["podman1", "podman2"])[c.enter]
    assert tables.chains["FORWARD"][0][-2:] == ["-j", c.leave]
    guard.sync(["podman1", "podman2"])  # again: nothing changes, no second jump
    assert sum(r[-1] == c.leave for r in tables.chains["FORWARD"]) == 1
    assert len(tables.chains[c.enter]) == 2


def test_a_removed_network_loses_its_rules_only_after_the_new_ones_are_in(
    tables: FakeTables,
) -> None:
    guard = NetworkGuard("unix:///e.sock")
    c = guard.chains
    guard.sync(["podman1", "podman2"])
    tables.log.clear()
    guard.sync(["podman2", "podman3"])
    assert tables.chains[c.enter] == [
        ["-o", "podman2", "-j", "DROP"],
        ["-o", "podman3", "-j", "DROP"],
    ]
    ops = [entry[0] + " " + " ".join(entry[1:]) for entry in tables.log if entry[0] in ("-A", "-D")]
    added = max(i for i, o in enumerate(ops) if o.startswith("-A"))
    removed = min(i for i, o in enumerate(ops) if o.startswith("-D"))
    assert added < removed, ops
    assert not any("podman1" in r for rules in tables.chains.values() for r in map(str, rules))


def test_the_last_network_gone_takes_the_chains_and_the_jump(tables: FakeTables) -> None:
    tables.chains["FORWARD"].append(["-j", "NETAVARK_FORWARD"])
    guard = NetworkGuard("unix:///e.sock")
    guard.sync(["podman1"])
    guard.sync([])
    assert tables.chains == {"FORWARD": [["-j", "NETAVARK_FORWARD"]]}
