"""The runc driver's firewall rules, with `iptables` (the host's own, nf_tables or legacy).

Only chains of our own are written (`runc_net_plan.chains_for`): one in the filter table,
jumped to first from FORWARD, one in the nat table, jumped to from POSTROUTING; each of our
rules carries a comment naming its network, so a network's rules are found and removed by it.
The chains and their jumps go when their last network goes. No other rule is ever changed.
The caller serialises calls (one lock per driver instance).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence

from cellplane.drivers import errors
from cellplane.drivers.runc_net_plan import Chains, Rule, rule_comment

__all__ = ["apply", "chain_rules", "iptables", "remove"]

_PARENT = {"filter": "FORWARD", "nat": "POSTROUTING"}
_JUMP_COMMENT = "cprunc"


def _iptables() -> str:
    found = shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin")
    if found is None:
        raise errors.PermanentDriverError("iptables is not installed: networks cannot be isolated")
    return found


def iptables(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [_iptables(), "-w", "5", *args], capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise errors.PermanentDriverError(
            f"iptables {' '.join(args)}: {done.stderr.strip() or done.returncode}"
        )
    return done


def chain_rules(table: str, chain: str) -> list[list[str]]:
    """The rules of `chain` as `iptables -S` prints them (split), without the `-N` line."""
    done = iptables(["-t", table, "-S", chain], check=False)
    if done.returncode != 0:
        return []  # no such chain
    return [shlex.split(ln) for ln in done.stdout.splitlines() if ln.startswith("-A ")]


def _ensure_chain(table: str, chain: str) -> None:
    parent = _PARENT[table]
    if iptables(["-t", table, "-S", chain], check=False).returncode != 0:
        iptables(["-t", table, "-N", chain], check=False)  # made meanwhile: fine
    jump = ["-m", "comment", "--comment", _JUMP_COMMENT, "-j", chain]
    if iptables(["-t", table, "-C", parent, *jump], check=False).returncode != 0:
        iptables(["-t", table, "-I", parent, "1", *jump])


def _drop_chain_if_empty(table: str, chain: str) -> None:
    if chain_rules(table, chain):
        return
    jump = ["-m", "comment", "--comment", _JUMP_COMMENT, "-j", chain]
    while iptables(["-t", table, "-D", _PARENT[table], *jump], check=False).returncode == 0:
        pass
    iptables(["-t", table, "-X", chain], check=False)


def _of_network(rule: list[str], network: str) -> bool:
    comment = rule_comment(network)
    return any(rule[i] == "--comment" and rule[i + 1] == comment for i in range(len(rule) - 1))


def apply(chains: Chains, network: str, rules: Sequence[Rule]) -> None:
    """Make `rules` the rules of `network` in our chains (unchanged if they are all there)."""
    for table, chain in (("filter", chains.forward), ("nat", chains.postrouting)):
        wanted = [r for r in rules if r.table == table]
        have = [r for r in chain_rules(table, chain) if _of_network(r, network)]
        if len(have) == len(wanted) and (wanted or not have):
            if wanted:
                _ensure_chain(table, chain)  # the jump may have been lost (a host's reload)
            continue
        for rule in have:
            iptables(["-t", table, "-D", *rule[1:]], check=False)
        if not wanted:
            continue
        _ensure_chain(table, chain)
        for r in wanted:
            if r.first:
                iptables(["-t", table, "-I", chain, "1", *r.spec])
            else:
                iptables(["-t", table, "-A", chain, *r.spec])


def remove(chains: Chains, network: str) -> None:
    """Take `network`'s rules away; our chains too once they hold no rule."""
    for table, chain in (("filter", chains.forward), ("nat", chains.postrouting)):
        for rule in chain_rules(table, chain):
            if _of_network(rule, network):
                iptables(["-t", table, "-D", *rule[1:]], check=False)
        _drop_chain_if_empty(table, chain)
