"""Gratuitous ARP from a cell that has just started: its addresses now live at its new MAC.

A cell that moves to another host (a drain, a failover) keeps its address on the project's
network but gets a new container, so a new MAC. Its peers' kernels keep the old MAC for that
address until their neighbour entry is probed again (about 39 s with the kernel's defaults,
measured across hosts), and the other hosts' VXLAN devices keep sending its frames to the old
host. An unsolicited ARP from each of its interfaces right after the start (`arping -U`, what
keepalived and ifupdown send when an address changes hands) updates both at once: the peers'
existing entries take the new MAC, and the broadcast crosses the overlay from the new host, so
every VXLAN device learns where that MAC is now.

Runs the tools of the cell's own network namespace (`nsenter --net=/proc/<pid>/ns/net`), so
nothing in the agent's own threads changes namespace. `addresses` is pure and unit-tested.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["AnnounceError", "addresses", "announce"]

#: `arping` of iputils (Debian: iputils-arping): `-U` unsolicited mode, one broadcast each.
ARPING = "arping"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


class AnnounceError(RuntimeError):
    """The addresses could not be announced (the message says why)."""


def addresses(ip_output: str) -> list[tuple[str, str]]:
    """(interface, IPv4 address) of each global address in `ip -o -4 addr show` output."""
    found: list[tuple[str, str]] = []
    for line in ip_output.splitlines():
        words = line.split()
        if "inet" not in words or "scope" not in words:
            continue
        if words[words.index("scope") + 1 : words.index("scope") + 2] != ["global"]:
            continue
        iface = words[1].split("@", 1)[0]
        address = words[words.index("inet") + 1].split("/", 1)[0]
        found.append((iface, address))
    return found


def _run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)


def announce(pid: int, *, run: Runner = _run, timeout: float = 10.0) -> list[str]:
    """Send one unsolicited ARP from every global IPv4 address of process `pid`'s network
    namespace (one after the other: arping waits its one-second interval before it exits);
    returns the addresses announced. AnnounceError when it cannot."""
    if shutil.which(ARPING) is None:
        raise AnnounceError(f"{ARPING} not found on this host (Debian: install iputils-arping)")
    enter = ["nsenter", f"--net=/proc/{pid}/ns/net"]
    try:
        listed = run([*enter, "ip", "-o", "-4", "addr", "show"], timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AnnounceError(f"listing the addresses of pid {pid}: {exc}") from exc
    if listed.returncode != 0:
        raise AnnounceError(f"listing the addresses of pid {pid}: {listed.stderr.strip()}")
    done: list[str] = []
    for iface, address in addresses(listed.stdout):
        argv = [*enter, ARPING, "-U", "-c", "1", "-I", iface, address]
        try:
            sent = run(argv, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AnnounceError(f"{ARPING} {address} on {iface}: {exc}") from exc
        if sent.returncode != 0:
            raise AnnounceError(f"{ARPING} {address} on {iface}: {sent.stderr.strip()}")
        done.append(address)
    return done
