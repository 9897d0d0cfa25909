"""What the agent derives from its configuration and its assignments, without I/O.

`runner.Agent` uses these: the host's capacity, a cell's container name and engine spec, the
engine network a cell joins, the labels that mark what belongs to this host. Pure, so they are
tested without an engine.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cellplane.drivers.base import (
    DEFAULT_PIDS_LIMIT,
    ContainerInfo,
    ContainerSpec,
    MountSpec,
    NetworkSpec,
    PortSpec,
)
from cellplane.drivers.engine import SANDBOX_RUNTIME
from cellplane.wire import agent_plain as wire
from cellplane.wire import engine_options
from cellplane.wire import exec as exec_wire

__all__ = [
    "CELL_LABEL",
    "GENERATION_LABEL",
    "HOST_LABEL",
    "PROJECT_LABEL",
    "AgentConfig",
    "container_name",
    "container_spec",
    "event",
    "host_capacity",
    "network_spec",
    "picked_ports",
    "project_network_spec",
    "stop_timeout",
]

CELL_LABEL = "cellplane.cell"
HOST_LABEL = "cellplane.host"
PROJECT_LABEL = "cellplane.project"
# The assignment generation a container was created for (see `agent.reconcile`: stale ones go).
GENERATION_LABEL = "cellplane.generation"


@dataclass
class AgentConfig:
    server_url: str
    join_token: str
    data_dir: Path
    name: str = field(default_factory=socket.gethostname)
    address: str = "127.0.0.1"
    labels: dict[str, str] = field(default_factory=dict)
    zone: str | None = None
    cpu_ratio: float = 16.0  # CPU overcommit, as OpenStack's default allocation ratio
    memory_ratio: float = 1.0
    parallelism: int = 16  # the most engine operations at once (`agent.concurrency`)
    fixed_parallelism: bool = False  # always `parallelism`, not adapted to the engine
    resync_s: float = 1.0
    heartbeat_s: float = 2.0  # the server's thresholds: SUSPECT after 3 missed, DOWN after 10 s
    verify: bool | str = True
    # Whether engine networks get the control plane's subnet (the assignment's) or one the engine
    # picks from its own pool, as before networks were a resource. Off until the control plane
    # owns addressing across hosts (the overlay): several engines on one machine (tests, dev
    # hosts) are kept apart by their own subnet pools.
    control_plane_subnets: bool = False
    # The isolation classes the engine can run (`agent.isolation.probe` at start) and how.
    isolation: list[str] = field(default_factory=lambda: ["standard"])
    isolation_detail: str | None = None
    # The overlay (project networks across hosts): networks on VXLAN bridges, with the control
    # plane's subnets and addresses; `address` is then the underlay address peers reach.
    overlay: bool = False
    vxlan_port: int = 4789
    # The engine's network run dir (its resolver's files), None: podman's shared default.
    network_run_dir: Path | None = None
    # An engine network no assigned cell is on is removed once this agent has not readied it
    # for this long (`Preparer.collect_networks`): a deleted network's, a left project's.
    network_gc_s: float = 60.0


def host_capacity(data_dir: Path, cpu_ratio: float, memory_ratio: float) -> wire.HostCapacity:
    cpus = os.cpu_count() or 1
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    disk_gb = shutil.disk_usage(data_dir).free // (1024**3)
    return wire.HostCapacity(
        cpu=round(cpus * cpu_ratio, 3),
        memory_mb=int(mem_mb * memory_ratio),
        disk_gb=int(disk_gb),
        cores=cpus,
        cpu_ratio=cpu_ratio,
    )


def container_name(cell_id: str) -> str:
    return f"cp-{cell_id}"


def stop_timeout(cell: wire.CellAssignment) -> float:
    """Seconds between the stop signal and SIGKILL; 0 kills at once (`docker rm -f`, `-t 0`)."""
    return 10.0 if cell.stop_timeout is None else float(cell.stop_timeout)


def network_spec(
    cell: wire.CellAssignment,
    host_id: str,
    *,
    with_subnet: bool = False,
    network: wire.NetworkDescription | None = None,
) -> NetworkSpec:
    """The engine network a cell joins (`network`, one of its further ones; None: its first),
    labelled as this host's and its project's."""
    return project_network_spec(
        cell.project_id, cell.network if network is None else network, host_id, with_subnet
    )


def project_network_spec(
    project_id: str, net: wire.NetworkDescription, host_id: str, with_subnet: bool = False
) -> NetworkSpec:
    """The engine network of a project's network `net`, labelled as this host's and the project's.

    Its subnet is the control plane's (`with_subnet`), or one the engine picks of the same size:
    the control plane sizes a project's network for its cell quota.
    """
    prefix = ipaddress.ip_network(net.subnet).prefixlen if net.subnet else None
    return NetworkSpec(
        name=net.name,
        driver=net.driver,
        subnet=net.subnet if with_subnet else None,
        labels={HOST_LABEL: host_id, PROJECT_LABEL: project_id},
        # A /24 is what the engine picks anyway: such networks stay exactly as they were made.
        prefix_length=None if with_subnet or prefix in (None, 24) else prefix,
    )


def container_spec(
    cell: wire.CellAssignment | dict[str, Any],
    host_id: str,
    image_ref: str | None,
    *,
    overlay: bool = False,
    binds: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """The engine container for a cell; pure, so it is tested without an engine.

    On the overlay the container gets the control plane's address on its network. `binds`: the
    real path of each host path the cell mounts, checked (`prepare.checked_binds`); a host path
    missing there is refused (ValueError), never mounted unchecked.
    """
    c = wire.parse(wire.CellAssignment, cell)
    options = engine_options.from_labels(c.labels)  # a Docker endpoint's (ValueError if bad)
    labels = {k: v for k, v in c.labels.items() if not k.startswith("cellplane.")}
    labels.update(
        {
            CELL_LABEL: c.cell_id,
            HOST_LABEL: host_id,
            PROJECT_LABEL: c.project_id,
            GENERATION_LABEL: str(c.generation),
        }
    )
    kind = c.image.kind
    return ContainerSpec(
        name=container_name(c.cell_id),
        image=image_ref if kind != "host" else None,
        rootfs="/" if kind == "host" else None,
        command=list(c.command) if c.command else None,
        entrypoint=list(c.entrypoint) if c.entrypoint is not None else None,
        workdir=c.workdir,
        user=c.user,
        env=dict(c.env),
        labels=labels,
        hostname=c.hostname or c.name,
        network=c.network.name,
        aliases=exec_wire.network_names(c.cell_id, c.name, c.labels),
        address=c.network.address if overlay and c.network.vni is not None else None,
        extra_networks={
            n.name: n.address if overlay and n.vni is not None else None
            for n in c.extra_networks
            if n.name != c.network.name
        },
        cpu=float(c.cpu),
        memory_mb=int(c.memory_mb),
        ports=[PortSpec(p.container_port, p.host_port, p.protocol) for p in c.ports],
        mounts=[_mount(m, binds or {}) for m in c.mounts],
        read_only=c.read_only,
        pids_limit=c.pids_limit if c.pids_limit is not None else DEFAULT_PIDS_LIMIT,
        runtime=SANDBOX_RUNTIME if c.isolation == "sandbox" else None,
        stdin=c.labels.get(exec_wire.STDIN_LABEL) in ("open", "once"),
        stdin_once=c.labels.get(exec_wire.STDIN_LABEL) == "once",
        tty=c.labels.get(exec_wire.TTY_LABEL) == "true",
        tty_size=_tty_size(c.labels),
        cap_drop=options.cap_drop,
        extra_hosts=options.extra_hosts,
        tmpfs=options.tmpfs,
        stop_signal=options.stop_signal,
        init=options.init,
        group_add=options.group_add,
        ulimits=options.ulimits,
    )


def picked_ports(cell: wire.CellAssignment, info: ContainerInfo) -> list[dict[str, Any]]:
    """The host ports the engine picked for the cell's ports that name none (`-p PORT`), as the
    running container shows them: sorted, one per container port and protocol."""
    wanted = {(p.container_port, p.protocol) for p in cell.ports if p.host_port is None}
    picked: dict[tuple[int, str], int] = {}
    for p in info.ports:  # a port bound twice (IPv4 and IPv6) counts once
        key = (p.container_port, p.protocol)
        if p.host_port and key in wanted:
            picked[key] = min(p.host_port, picked.get(key, p.host_port))
    return [
        {"container_port": port, "host_port": host_port, "protocol": protocol}
        for (port, protocol), host_port in sorted(picked.items())
    ]


def _mount(m: wire.MountAssignment, binds: Mapping[str, str]) -> MountSpec:
    if m.host_path is None:
        return MountSpec(m.engine_name, m.path, m.read_only)
    real = binds.get(m.host_path)
    if real is None:
        raise ValueError(f"host path {m.host_path!r} was not checked on this host")
    return MountSpec("", m.path, m.read_only, host_path=real)


def _tty_size(labels: dict[str, str]) -> tuple[int, int] | None:
    """The TTY's size from its start (`exec_wire.TTY_SIZE_LABEL`, ``COLSxROWS``); None without
    a TTY, or when the label is absent or not a size (the terminal then starts unsized)."""
    if labels.get(exec_wire.TTY_LABEL) != "true":
        return None
    cols, x, rows = labels.get(exec_wire.TTY_SIZE_LABEL, "").partition("x")
    if not (x and cols.isdigit() and rows.isdigit()):
        return None
    size = int(cols), int(rows)
    return size if all(1 <= v <= exec_wire.MAX_DIMENSION for v in size) else None


def event(kind: str, message: str) -> dict[str, Any]:
    return {"at": datetime.now(UTC).isoformat(), "type": kind, "message": message}
