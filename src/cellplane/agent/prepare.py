"""What a cell needs on the engine before and around its container: image, network, volumes.

`runner.Agent` owns one `Preparer`. Each resource is prepared once per agent process (a set
remembers what is ready; a lock keeps two actions from preparing the same one at once) and is
adopted when the engine already has it, so a restarted agent carries on with what exists.
Creating and removing a cell's container live here too: they are the engine side of an action,
while the runner decides which action to take.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from cellplane.agent.server_client import ServerClient
from cellplane.agent.spec import (
    HOST_LABEL,
    AgentConfig,
    container_name,
    container_spec,
    project_network_spec,
)
from cellplane.agent.spec import event as _event
from cellplane.drivers.base import ContainerSpec, Driver, PreparesStart
from cellplane.drivers.engine import SHARED_NETWORK_RUN_DIR
from cellplane.drivers.errors import (
    AddressesExhausted,
    ContainerNotFound,
    DriverError,
    NameConflict,
    PermanentDriverError,
    TemporaryDriverError,
)
from cellplane.host_paths import HostPathError, resolve_under
from cellplane.wire import agent_plain as wire

if TYPE_CHECKING:
    from cellplane.agent.overlay_agent import OverlayAgent

log = structlog.get_logger("cellplane.agent")

__all__ = ["LimitsPending", "Preparer", "checked_binds", "unused_networks"]


#: Pauses before asking the engine again to limit a container that says it runs.
_LIMIT_RETRIES_S = (0.05, 0.2, 0.5)


def unused_networks(
    engine: Iterable[str],
    in_use: Collection[str],
    readied_at: Mapping[str, float],
    now: float,
    grace_s: float,
) -> list[str]:
    """Which of this host's engine networks to remove: those no assigned cell is on, unless
    this agent readied one less than `grace_s` seconds ago (for a cell that has just arrived, or
    a `network connect` on its way). What a Swarm node does with a network when its last task
    leaves; a network made by an earlier agent process counts as readied long ago."""
    return [n for n in engine if n not in in_use and now - readied_at.get(n, -math.inf) >= grace_s]


def checked_binds(cell: wire.CellAssignment) -> dict[str, str]:
    """The real path of each host path the cell mounts, checked here on its host: it exists and,
    links resolved, lies under the allowed directory that admitted it (`MountAssignment.host_root`,
    resolved too). PermanentDriverError otherwise: the cell fails, naming the path; nothing is
    created on the host."""
    out: dict[str, str] = {}
    for m in cell.mounts:
        if m.host_path is None:
            continue
        try:
            out[m.host_path] = resolve_under(m.host_path, m.host_root)
        except HostPathError as exc:
            raise PermanentDriverError(f"cannot mount {m.host_path} at {m.path}: {exc}") from exc
    return out


class LimitsPending(TemporaryDriverError):
    """The container runs, its limits could not be set and it could not be stopped either."""

    def __init__(self, message: str, container_id: str) -> None:
        super().__init__(message)
        self.container_id = container_id


class Preparer:
    def __init__(
        self,
        driver: Driver,
        server: ServerClient,
        data_dir: Path,
        *,
        subnets: bool,
        overlay: OverlayAgent | None = None,
    ) -> None:
        self.driver = driver
        self.overlay = overlay  # networks on VXLAN bridges across hosts
        self.server = server
        self.data_dir = data_dir
        self.subnets = subnets  # create networks with the control plane's subnet
        self._images: set[str] = set()
        self._networks: set[tuple[str, str | None]] = set()  # (name, subnet): a moved one again
        self._readied_at: dict[str, float] = {}  # network name -> when a cell last needed it
        self._collected_at = -math.inf  # when `collect_unused` last listed the networks
        self._volumes: set[str] = set()
        # Prepared containers whose limits are set already (cpu, memory_mb): not again at start.
        self._limited_before_start: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_agent(cls, driver: Driver, server: ServerClient, config: AgentConfig) -> Preparer:
        """The agent's preparer; with the overlay when the agent's configuration asks for it."""
        overlay = None
        if config.overlay:
            # Imported here: netlink (pyroute2) only for agents of the overlay.
            from cellplane.agent.overlay_agent import OverlayAgent

            overlay = OverlayAgent(
                config.address,
                server.overlay,
                dstport=config.vxlan_port,
                dns_dir=config.network_run_dir or SHARED_NETWORK_RUN_DIR,
            )
        return cls(
            driver,
            server,
            config.data_dir,
            subnets=config.control_plane_subnets,
            overlay=overlay,
        )

    @property
    def on_overlay(self) -> int:
        """1 with the overlay, 0 without (how many overlay threads the agent runs)."""
        return int(self.overlay is not None)

    def run_overlay(self, stop: threading.Event) -> None:
        """Keep the overlay current until `stop` (the agent's thread for it)."""
        if self.overlay is not None:
            self.overlay.run(stop)

    def image(self, cell: wire.CellAssignment) -> str | None:
        """The engine reference of the cell's image, loaded from the server when missing."""
        image = cell.image
        if image.kind == "host":
            return None
        ref = str(image.engine_ref)
        if ref in self._images:
            return ref
        with self._lock:
            if ref in self._images:
                return ref
            if not self.driver.has_image(ref):
                dest = self.data_dir / "images" / f"{image.id}.tar"
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.server.download_image(image.id, dest)
                try:
                    self.driver.load_image(dest)
                finally:
                    dest.unlink(missing_ok=True)
            self._images.add(ref)
        return ref

    def network(self, cell: wire.CellAssignment, host_id: str) -> None:
        """Every network of the cell on the engine (its first and its further ones)."""
        for net in (cell.network, *cell.extra_networks):
            self.ensure_network(cell.project_id, net, host_id)

    def ensure_network(self, project_id: str, net: wire.NetworkDescription, host_id: str) -> None:
        """The project's network `net` on the engine (and on the overlay's bridge), once."""
        key = (net.name, net.subnet)
        self._readied_at[net.name] = time.monotonic()
        if key in self._networks:
            return
        with self._lock:
            self._readied_at[net.name] = time.monotonic()
            if key not in self._networks:
                spec = project_network_spec(project_id, net, host_id, self.subnets)
                if self.overlay is not None and net.vni is not None:
                    self.overlay.prepare(net)
                    spec = self.overlay.network_spec(spec, net)
                self.driver.ensure_network(spec)
                if self.overlay is not None:
                    self.overlay.ready(net)
                self._networks.add(key)

    def collect_unused(
        self, cells: Iterable[wire.CellAssignment], host_id: str, grace_s: float
    ) -> None:
        """`collect_networks` for the networks of the assigned `cells`, at most every 15 s (a
        listing of the engine's networks); a failure is logged and left for a later pass."""
        now = time.monotonic()
        if now - self._collected_at < min(15.0, grace_s):
            return
        self._collected_at = now
        in_use = {n.name for c in cells for n in (c.network, *c.extra_networks)}
        try:
            removed = self.collect_networks(in_use, host_id, grace_s)
        except DriverError as e:
            log.warning("network collection failed", error=str(e))
            return
        if removed:
            log.info("unused networks removed", networks=removed)

    def collect_networks(self, in_use: Collection[str], host_id: str, grace_s: float) -> list[str]:
        """Remove this host's engine networks that no assigned cell (`in_use`: their names) is
        on (`unused_networks`); returns those removed. One the engine still has a container on
        (a cell whose removal is under way) is refused by the engine and kept for a later pass.
        """
        removed: list[str] = []
        engine = self.driver.list_networks({HOST_LABEL: host_id})
        for name in unused_networks(engine, in_use, self._readied_at, time.monotonic(), grace_s):
            with self._lock:
                # Again under the lock: a cell may have readied it since.
                if not unused_networks([name], in_use, self._readied_at, time.monotonic(), grace_s):
                    continue
                self._networks = {k for k in self._networks if k[0] != name}
                try:
                    self.driver.remove_network(name)
                except DriverError as exc:
                    log.debug("network kept", network=name, reason=str(exc))
                    continue
                self._readied_at.pop(name, None)
            removed.append(name)
        return removed

    def volume(self, name: str, volume_id: str, host_id: str) -> None:
        if name in self._volumes:
            return
        with self._lock:
            if name not in self._volumes:
                self.driver.ensure_volume(
                    name, {HOST_LABEL: host_id, "cellplane.volume": volume_id}
                )
                self._volumes.add(name)

    def forget_volume(self, name: str) -> None:
        """The volume was removed: prepare it again if a cell needs it later."""
        self._volumes.discard(name)

    def create(
        self,
        cell: wire.CellAssignment,
        host_id: str,
        events: list[dict[str, Any]],
        *,
        recreated: bool,
        latest: Callable[[str], wire.CellAssignment | None] = lambda _: None,
    ) -> None:
        """Create and start the cell's container (adopting one an earlier pass created). A cell
        to be made only (desired CREATED, `docker create`) is not started, unless its newest
        assignment (`latest`) asks for it by then: `docker run`'s start often comes while its
        container is being made (the next pass would start it, one pass later).

        Never without the mounts the cell declares: while a volume of it is not on this host
        (`pending_volumes`) nothing is created, and the action is retried."""
        if cell.pending_volumes:
            raise TemporaryDriverError(self.waiting_for(cell))
        image_ref = self.image(cell)
        events.append(_event("image-ready", cell.image.id))
        self.network(cell, host_id)
        binds = checked_binds(cell)
        for m in cell.mounts:
            if m.host_path is None:
                self.volume(m.engine_name, m.volume_id, host_id)
        spec = container_spec(
            cell, host_id, image_ref, overlay=self.overlay is not None, binds=binds
        )
        try:
            cid = self.driver.create(spec)
        except NameConflict:
            # Created by an earlier pass that did not live to report it: use that one.
            cid = self.driver.inspect(spec.name).id
        events.append(_event("recreated" if recreated else "created", cid[:12]))
        run: wire.CellAssignment | None = cell
        if cell.desired_state == "CREATED":
            run = latest(cell.cell_id)
            if (run is None or run.desired_state != "RUNNING") and self._prepare_start(
                cell, spec, cid
            ):
                run = latest(cell.cell_id)  # the start may have come meanwhile
        if run is not None and run.desired_state == "RUNNING":
            self.start(run, cid)
            events.append(_event("started", ""))

    def _prepare_start(
        self, cell: wire.CellAssignment, spec: ContainerSpec, container_id: str
    ) -> bool:
        """Do the engine's share of the start that runs nothing yet (`PreparesStart`), for a
        container made to be started later: `docker run`'s start is on its way and then takes
        ~8 ms instead of ~80 on podman. Its limits are set then too (the runtime's own start-up
        is over, so the quota no longer slows it), not after the start. Not for a container
        that publishes ports (it would hold them from its creation on, where Docker binds them
        at the start), a sandbox, nor one made to be attached (standard input or a TTY: the
        engine's attach before the start prepares it itself). Best effort: when the engine
        cannot, the start does it all. True when prepared."""
        if spec.ports or spec.runtime is not None or spec.stdin or spec.tty:
            return False
        if not isinstance(self.driver, PreparesStart):
            return False
        try:
            self.driver.prepare_start(container_id)
        except DriverError as exc:
            log.info("start not prepared", container=container_id[:12], error=str(exc))
            return False
        limits = (float(cell.cpu), int(cell.memory_mb))
        try:
            self.driver.apply_limits(container_id, *limits)
        except DriverError as exc:  # set after the start, as for any container
            log.info("limits not set before the start", container=container_id[:12], error=str(exc))
        else:
            self._limited_before_start[container_id] = limits
        return True

    @staticmethod
    def waiting_for(cell: wire.CellAssignment) -> str:
        """Why the cell has no container yet: the volumes it mounts that are not here."""
        names = ", ".join(repr(n) for n in cell.pending_volumes)
        return f"waiting for its volume {names} to be on this host: not created without it"

    def start(self, cell: wire.CellAssignment, container_id: str) -> None:
        """Start the cell's container, then set its limits and fix its bridges' addresses: only
        then does it count as running.

        The engine starts it without a CPU quota (a quota slows the runtime's own start-up by
        up to 30x for tiny cells); the quota follows at once, before anything reports RUNNING.
        """
        # Prepared with these limits (`_prepare_start`): set already; only this first start.
        limited = self._limited_before_start.pop(container_id, None) == (cell.cpu, cell.memory_mb)
        try:
            self.driver.start(container_id)
        except AddressesExhausted as exc:
            raise AddressesExhausted(
                f"IPAM: no free address in {cell.network.name} ({exc})"
            ) from exc
        if not limited:
            self.limit(cell, container_id)
        for network in dict.fromkeys(n.name for n in (cell.network, *cell.extra_networks)):
            self.driver.pin_network_bridge(network)  # its first cell made it (`bridge_pin`)
        if self.overlay is not None:
            self.overlay.announce(cell.cell_id, lambda: self._pid(container_id))

    def limit(self, cell: wire.CellAssignment, container_id: str) -> None:
        """Set the running container's CPU and memory limits; stop it if they cannot be set.

        A sandboxed cell's go to its cgroup directly (runsc has no `update`; the driver knows)."""
        error: DriverError | None = None
        for pause in (*_LIMIT_RETRIES_S, None):
            try:
                self.driver.apply_limits(container_id, float(cell.cpu), int(cell.memory_mb))
                return
            except DriverError as exc:
                if not self._running(container_id):
                    return  # it ended already (a quick command): nothing left to limit
                error = exc
            if pause is not None:
                # A command that exits at once: `runc update` fails on its departing cgroup
                # while the engine still says running (conmon has not reaped it). Ask again.
                time.sleep(pause)
        assert error is not None
        limits = f"cpu {float(cell.cpu):g}, memory {int(cell.memory_mb)} MB"
        try:
            self.driver.kill(container_id)
        except ContainerNotFound:
            pass
        except DriverError as again:
            raise LimitsPending(
                f"limits ({limits}) not applied: {error}; stopping it failed too: {again}",
                container_id,
            ) from error
        raise PermanentDriverError(
            f"limits ({limits}) not applied, so the container was stopped: {error}"
        ) from error

    def _pid(self, container_id: str) -> int | None:
        """The container's main process while it runs (None: not running, or unknown)."""
        try:
            return self.driver.inspect(container_id).pid
        except DriverError:
            return None

    def _running(self, container_id: str) -> bool:
        """Whether the container runs; True when the engine cannot say (assume the worst)."""
        try:
            return self.driver.inspect(container_id).running
        except ContainerNotFound:
            return False
        except DriverError:
            return True

    def remove(self, container_id: str | None) -> None:
        if not container_id:
            return
        self._limited_before_start.pop(container_id, None)
        with contextlib.suppress(ContainerNotFound):
            self.driver.remove(container_id, force=True)

    def confirm_gone(self, cell_id: str, container_id: str | None) -> None:
        """Raise (the action is retried) unless the engine knows no container of this cell."""
        for ref in dict.fromkeys(r for r in (container_id, container_name(cell_id)) if r):
            try:
                info = self.driver.inspect(ref)
            except ContainerNotFound:
                continue
            raise TemporaryDriverError(f"container {info.id[:12]} of {cell_id} is still there")
