"""The words of every "does not fit" reason, shared by both placement engines.

`_small` (pure Python) and `_table` (numpy) each run the same filter pipeline to find the
constraint that eliminated the last candidate hosts; they compute the numbers and call these
functions, so the text is identical whichever engine ran. Pipeline order, which decides the
reason when several constraints bind: host state, isolation class, labels, zones, STRICT near,
hard (anti-)affinity, cpu, memory, disk, host ports, instancePerHost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "FALLBACK",
    "NO_HOSTS",
    "affinity",
    "fmt_cpu",
    "isolation",
    "labels",
    "near",
    "not_ready",
    "per_host",
    "port_taken",
    "ports_together",
    "resource",
    "zones",
]

NO_HOSTS = "no hosts are registered"
# Only reachable if the engines and the pipeline disagree, which the tests rule out.
FALLBACK = "no host satisfies all constraints together"

_STATE_ORDER = {"MAINTENANCE": 0, "DOWN": 1, "SUSPECT": 2}


def fmt_cpu(mcpu: int) -> str:
    """Cores as people write them: 4000 -> "4", 2500 -> "2.5"."""
    return f"{mcpu / 1000:g}"


def _fmt_free_cpu(mcpu: int) -> str:
    # Free cpu always shows a decimal so it reads as a measured amount: "2.0", "1.25".
    return str(round(max(mcpu, 0) / 1000, 3))


def _fmt_labels(required: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(required.items()))


def not_ready(states: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    order = sorted(counts, key=lambda s: (_STATE_ORDER.get(s, 3), s))
    parts = [f"{counts[s]} in {s}" if s == "MAINTENANCE" else f"{counts[s]} {s}" for s in order]
    return f"no host is READY ({', '.join(parts)})"


def isolation(wanted: str, ready_hosts: int) -> str:
    if ready_hosts == 1:
        hosts = "the READY host does not offer it"
    else:
        hosts = f"none of {ready_hosts} READY hosts offer it"
    return (
        f"no host offers isolation class {wanted}: {hosts} (an agent offers sandbox when "
        "gVisor's runsc runs there; install runsc and restart the agent)"
    )


def labels(required: Mapping[str, str]) -> str:
    return f"no host carries labels {_fmt_labels(required)}"


def zones(allowed: frozenset[str], required_labels: Mapping[str, str]) -> str:
    where = "{" + ", ".join(sorted(allowed)) + "}"
    if required_labels:
        return f"no host carrying labels {_fmt_labels(required_labels)} is in zones {where}"
    return f"no host in zones {where}"


def near(group: str) -> str:
    return f"no candidate host holds a member of group {group} (STRICT association)"


def affinity(selector: str, *, anti: bool) -> str:
    if anti:
        return f"every candidate host runs a cell matching {selector} (anti-affinity)"
    return f"no candidate host runs a cell matching {selector} (affinity)"


def resource(dim: str, need: int, largest_free: int, narrowed_by: list[str]) -> str:
    """`dim` is "cpu" (millicores), "memory" (MB) or "disk" (GB)."""
    if dim == "cpu":
        text = f"needs {fmt_cpu(need)} cpu, the largest free host has {_fmt_free_cpu(largest_free)}"
    elif dim == "memory":
        text = f"needs {need} MB memory, the largest free host has {max(largest_free, 0)} MB"
    else:
        text = f"needs {need} GB disk, the largest free host has {max(largest_free, 0)} GB"
    if narrowed_by:
        text += f" (among hosts with enough {' and '.join(narrowed_by)})"
    return text


def _fmt_port(port: tuple[str, int]) -> str:
    return f"{port[0]}/{port[1]}"


def port_taken(port: tuple[str, int]) -> str:
    return f"host port {_fmt_port(port)} is taken on every candidate host"


def ports_together(ports: frozenset[tuple[str, int]]) -> str:
    names = ", ".join(_fmt_port(p) for p in sorted(ports))
    return f"host ports {names} are not all free on any candidate host"


def per_host(max_per_host: int, group: str, hosts: int) -> str:
    held = "host holds" if hosts == 1 else "hosts hold"
    return f"instancePerHost {max_per_host} for group {group}: {hosts} {held} members"
