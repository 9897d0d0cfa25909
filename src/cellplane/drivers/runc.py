"""`RuncDriver`: the `Driver` Protocol over the OCI runtime (runc) itself, without an engine
between the agent and its cells' processes (issue 12: podman costs ~200 ms of CPU per container
here, a plain `runc run` of a bundle 20-40 ms).

The podman engine stays the image and volume store: images, volumes, image loading and builds
are delegated to a `PodmanDriver`. A cell is a directory `<dir>/containers/<id>/`:

* its root: an overlay of the image flattened once (`runc_rootfs`), mounted with mount(2);
* its bundle `config.json`, written here (`runc_config`, OCI runtime spec 1.0), with the hosts,
  resolv.conf and hostname files it binds, volumes bound from the engine's volume directories,
  a cgroup under the agent's own (`cellplane-runc/<id>`), a network namespace from the network
  backend (`runc_net`; loopback only without it: `runc_loopback`);
* its log file (stdout and stderr), opened here and handed to `runc run --detach`;
* its `state.json` record (`runc_state`): the driver's truth, read back after an agent restart.

The agent is a child subreaper, so the containers' init processes are its children once runc
has exited: their exit codes are reaped and recorded (`runc_state.ExitWatcher`). Containers
outlive the agent (runc's detached containers are not tied to it); a restarted driver adopts the
running ones, and reports the exit code of one that ends after that as unknown (None).

Not supported here (clear `PermanentDriverError`s): published ports, TTY/stdin cells,
interactive exec and attach, the sandbox runtime (runsc), per-line log timestamps.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cellplane.drivers import errors, runc_io, sandbox_limits
from cellplane.drivers.base import (
    ContainerInfo,
    ContainerSpec,
    ExecResult,
    ExecSession,
    NetworkSpec,
)
from cellplane.drivers.podman import PodmanDriver
from cellplane.drivers.runc_config import (
    BundlePaths,
    UserIds,
    bundle_config,
    bundle_volumes,
    resolve_user,
)
from cellplane.drivers.runc_loopback import LoopbackNetworks, RuncNetworking
from cellplane.drivers.runc_rootfs import ImageRoots, mount_overlay, unmount
from cellplane.drivers.runc_state import (
    ExitWatcher,
    Record,
    become_subreaper,
    now_rfc3339,
    process_start_time,
)

__all__ = ["CGROUP_PARENT", "RuncDriver"]

#: The cells' cgroups, relative to the agent's own (runc's cgroupfs manager).
CGROUP_PARENT = "cellplane-runc"
_RUNC_TIMEOUT_S = 60.0
_INTERACTIVE = "interactive exec and attach are not supported by the runc driver yet"


class RuncDriver:
    """`Driver` running cells with runc directly; images and volumes stay `podman`'s.

    `directory`: the driver's own (`<agent data>/runc`); `networks`: the network backend
    (None: `LoopbackNetworks`, cells with loopback only). Thread-safe.
    """

    def __init__(
        self,
        podman: PodmanDriver,
        directory: Path,
        *,
        networks: RuncNetworking | None = None,
        runc: str = "runc",
    ) -> None:
        self.podman = podman
        self.directory = directory
        self.runc = shutil.which(runc) or runc
        self.state_root = directory / "state"
        self.containers = directory / "containers"
        for d in (self.state_root, self.containers):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.images = ImageRoots(podman, directory / "images")
        self.networks: RuncNetworking = networks or LoopbackNetworks(directory / "networks")
        become_subreaper()
        _raise_open_files()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._records: dict[str, Record] = {}
        self._names: dict[str, str] = {}
        self._watcher = ExitWatcher()
        self._adopt()

    # -- records ----------------------------------------------------------------------

    def _dir(self, container_id: str) -> Path:
        return self.containers / container_id

    def _adopt(self) -> None:
        """Read back every container's record; watch the ones still running."""
        for home in sorted(self.containers.iterdir()):
            try:
                record = Record.load(home)
            except (OSError, ValueError, TypeError):
                continue
            self._records[record.id] = record
            self._names[record.name] = record.id
            if record.status == "created":
                self._adopt_started(record, home)
            if record.status != "running":
                continue
            if record.alive():
                self._watcher.watch(record.pid, self._on_exit_of(record.id))
            else:  # ended while no agent watched: its exit code is lost
                self._finish(record, None)

    @staticmethod
    def _adopt_started(record: Record, home: Path) -> None:
        """A container whose start the last agent did not get to record (killed right after
        `runc run` wrote the pid file): running if that process still is."""
        pid_file = home / "pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        start = process_start_time(pid)
        if start is None:
            return
        record.status, record.pid, record.pid_start = "running", pid, start
        record.started_at = record.started_at or now_rfc3339()
        with contextlib.suppress(OSError):
            record.save(home)

    def _finish(self, record: Record, code: int | None) -> None:
        record.status = "exited"
        record.exit_code = code
        record.exit_known = code is not None
        record.finished_at = now_rfc3339()
        with contextlib.suppress(OSError):
            record.save(self._dir(record.id))

    def _on_exit_of(self, container_id: str) -> Any:
        def on_exit(code: int | None) -> None:
            with self._changed:
                record = self._records.get(container_id)
                if record is not None and record.status == "running":
                    self._finish(record, code)
                self._changed.notify_all()

        return on_exit

    def _record(self, id_or_name: str) -> Record:
        with self._lock:
            found = self._records.get(id_or_name) or self._records.get(
                self._names.get(id_or_name, "")
            )
            if found is None and len(id_or_name) >= 6:
                matches = [r for i, r in self._records.items() if i.startswith(id_or_name)]
                found = matches[0] if len(matches) == 1 else None
        if found is None:
            raise errors.ContainerNotFound(f"no such container: {id_or_name}")
        return found

    def _running(self, record: Record) -> bool:
        return record.status == "running" and record.alive()

    def close(self) -> None:
        """Stop watching exits (the containers keep running; the engine is the caller's)."""
        self._watcher.close()

    # -- runc -------------------------------------------------------------------------

    def _runc(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                [self.runc, "--root", str(self.state_root), *args],
                timeout=kwargs.pop("timeout", _RUNC_TIMEOUT_S),
                check=False,
                **kwargs,
            )
        except FileNotFoundError as exc:
            raise errors.PermanentDriverError(f"runc is not installed ({self.runc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise errors.TemporaryDriverError(f"runc {args[0]} timed out") from exc

    @staticmethod
    def _runc_error(home: Path, fallback: bytes) -> str:
        """runc's last error message (its JSON log), else its output."""
        log = home / "runc.log"
        with contextlib.suppress(OSError, ValueError):
            for line in reversed(log.read_text().splitlines()):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    return str(entry.get("msg"))
        return fallback.decode(errors="replace").strip()[-500:]

    # -- engine, images, volumes: the podman engine's ---------------------------------

    def ping(self) -> None:
        if shutil.which(self.runc) is None:
            raise errors.PermanentDriverError(f"runc is not installed ({self.runc})")
        self.podman.ping()

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self.podman.ensure_volume(name, labels)

    def remove_volume(self, name: str) -> None:
        with self._lock:
            users = [r.name for r in self._records.values() if name in r.extra.get("volumes", [])]
        if users:
            raise errors.VolumeInUse(f"volume {name} is used by {', '.join(sorted(users))}")
        self.podman.remove_volume(name)

    def list_volumes(self, labels: dict[str, str]) -> builtins.list[str]:
        return self.podman.list_volumes(labels)

    def volume_path(self, name: str) -> Path:
        return self.podman.volume_path(name)

    def has_image(self, ref: str) -> bool:
        return self.podman.has_image(ref)

    def load_image(self, path: Path) -> builtins.list[str]:
        return self.podman.load_image(path)

    def remove_image(self, ref: str) -> None:
        self.podman.remove_image(ref)

    # -- networks: the network backend's ----------------------------------------------

    def ensure_network(self, spec: NetworkSpec) -> None:
        self.networks.ensure_network(spec)

    def remove_network(self, name: str) -> None:
        self.networks.remove_network(name)

    def pin_network_bridge(self, name: str) -> None:
        """Nothing: this driver's own bridges are made with their address set (`runc_net`)."""

    def list_networks(self, labels: dict[str, str]) -> builtins.list[str]:
        return self.networks.list_networks(labels)

    # -- containers -------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> str:
        if spec.ports:
            raise errors.PermanentDriverError(
                f"container {spec.name}: published ports are not supported by the runc driver yet"
            )
        if spec.extra_networks:
            raise errors.PermanentDriverError(
                f"container {spec.name}: the runc driver puts a cell on one network only"
            )
        container_id = uuid.uuid4().hex + uuid.uuid4().hex
        with self._lock:
            if spec.name in self._names:
                raise errors.NameConflict(f"the container name {spec.name} is already in use")
            self._names[spec.name] = container_id  # reserved while it is made
        home = self._dir(container_id)
        try:
            record = self._make(container_id, spec, home)
        except BaseException:
            with self._lock:
                self._names.pop(spec.name, None)
            self._teardown(container_id, home)
            raise
        with self._lock:
            self._records[container_id] = record
        return container_id

    def _make(self, container_id: str, spec: ContainerSpec, home: Path) -> Record:
        home.mkdir(mode=0o700)
        image_id: str | None = None
        if spec.image is not None:
            root = self.images.root(spec.image)
            lower, image, image_id = root.rootfs, root.config, root.image_id
            try:
                user = resolve_user(
                    spec.user or str(image.get("User") or ""), root.etc("passwd"), root.etc("group")
                )
            except ValueError as exc:
                raise errors.PermanentDriverError(f"container {spec.name}: {exc}") from exc
        else:
            assert spec.rootfs is not None
            lower, image = Path(spec.rootfs), {}
            user = _numeric_user(spec)
        mount_overlay(lower, home / "upper", home / "work", home / "rootfs")
        address = ""
        netns: str | None = None
        resolv = "# no network\n"
        if spec.network is not None:
            attached = self.networks.attach(  # its name served by the end of `start`
                container_id,
                spec.network,
                spec.address,
                spec.name,
                list(spec.aliases),
                settle=False,
            )
            netns, address = attached.netns_path or None, attached.address
            resolv = self.networks.resolv_conf(spec.network)
        hostname = spec.hostname or spec.name[:63]
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if address:
            hosts.append(f"{address}\t{hostname} {spec.name}")
        (home / "hosts").write_text("\n".join(hosts) + "\n")
        (home / "resolv.conf").write_text(resolv)
        (home / "hostname").write_text(hostname + "\n")
        volumes = bundle_volumes(spec, self.podman.volume_path)
        paths = BundlePaths(
            rootfs=str(home / "rootfs"),
            hosts=str(home / "hosts"),
            resolv_conf=str(home / "resolv.conf"),
            hostname_file=str(home / "hostname"),
            cgroups_path=f"{CGROUP_PARENT}/{container_id[:32]}",
            volumes=volumes,
            netns=netns,
        )
        try:
            config = bundle_config(spec, image, user, paths)
        except ValueError as exc:
            raise errors.PermanentDriverError(str(exc)) from exc
        (home / "config.json").write_text(json.dumps(config))
        (home / "log").touch(mode=0o600)
        record = Record(
            id=container_id,
            name=spec.name,
            labels=dict(spec.labels),
            image=spec.image,
            image_id=image_id,
            created_at=now_rfc3339(),
            network=spec.network,
            address=address or None,
            extra={"volumes": [m.volume for m in spec.mounts if m.host_path is None]},
        )
        record.save(home)
        return record

    def _teardown(self, container_id: str, home: Path) -> None:
        """Undo what `_make` (or a container's life) left: runc state, network, mount, dir."""
        self._runc("delete", "--force", container_id, capture_output=True)
        with contextlib.suppress(errors.DriverError):
            self.networks.detach(container_id)
        unmount(home / "rootfs")
        shutil.rmtree(home, ignore_errors=True)

    def start(self, container_id: str) -> None:
        record = self._record(container_id)
        home = self._dir(record.id)
        with self._lock:
            if self._running(record):
                return
            if record.status == "starting":
                raise errors.TemporaryDriverError(f"container {record.name} is starting")
            previous = record.status
            record.status = "starting"
        try:
            if previous == "exited":  # runc keeps a stopped container's state until deleted
                self._runc("delete", "--force", record.id, capture_output=True)
            pid_file = home / "pid"
            pid_file.unlink(missing_ok=True)
            with (home / "log").open("ab") as log:
                proc = self._runc(
                    "--log",
                    str(home / "runc.log"),
                    "--log-format",
                    "json",
                    "run",
                    "--detach",
                    "--bundle",
                    str(home),
                    "--pid-file",
                    str(pid_file),
                    record.id,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if proc.returncode != 0:
                message = self._runc_error(home, b"")
                self._runc("delete", "--force", record.id, capture_output=True)
                pid_file.unlink(missing_ok=True)  # names no process of this container now
                raise errors.PermanentDriverError(
                    f"container {record.name} did not start: {message}"
                )
            pid = int(pid_file.read_text().strip())
        except BaseException:
            with self._lock:
                record.status = previous
            raise
        with self._changed:
            record.pid, record.pid_start = pid, process_start_time(pid)
            record.status, record.started_at = "running", now_rfc3339()
            record.exit_code, record.finished_at, record.exit_known = None, None, True
            record.save(home)
        self._watcher.watch(pid, self._on_exit_of(record.id))
        if record.network is not None:
            self.networks.settle_names()  # the resolver rebound while runc ran

    def apply_limits(self, container_id: str, cpu: float, memory_mb: int) -> None:
        record = self._record(container_id)
        if not self._running(record):
            raise errors.PermanentDriverError(f"container {record.name} is not running")
        try:
            sandbox_limits.apply(record.pid, cpu, memory_mb)
        except (OSError, ValueError) as exc:
            raise errors.DriverError(f"limits of container {record.name}: {exc}") from exc

    def _signal(self, record: Record, sig: int) -> bool:
        """Send `sig` to the container's init; False if it is not running."""
        if not self._running(record):
            return False
        try:
            fd = os.pidfd_open(record.pid)
        except ProcessLookupError:
            return False
        try:
            # Through a pidfd of the recorded process: never a later process with its pid.
            if process_start_time(record.pid) != record.pid_start:
                return False
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)
        return True

    def _wait_exited(self, record: Record, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while record.status == "running":
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
                if record.status == "running" and not record.alive():
                    self._changed.wait(0.2)  # the watcher is recording it
        return True

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        record = self._record(container_id)
        if self._signal(record, signal.SIGTERM) and self._wait_exited(record, timeout):
            return
        self.kill(record.id)

    def kill(self, container_id: str) -> None:
        record = self._record(container_id)
        if self._signal(record, signal.SIGKILL) and not self._wait_exited(record, 10.0):
            raise errors.TemporaryDriverError(f"container {record.name} did not end after SIGKILL")

    def signal(self, container_id: str, number: int) -> None:
        record = self._record(container_id)
        if not self._signal(record, number):
            raise errors.PermanentDriverError(f"container {record.name} is not running")

    def remove(self, container_id: str, force: bool = True) -> None:
        record = self._record(container_id)
        if self._running(record):
            if not force:
                raise errors.PermanentDriverError(
                    f"container {record.name} is running: stop it first or force the removal"
                )
            self.kill(record.id)
        self._teardown(record.id, self._dir(record.id))
        with self._lock:
            self._records.pop(record.id, None)
            if self._names.get(record.name) == record.id:
                self._names.pop(record.name, None)

    def _info(self, record: Record) -> ContainerInfo:
        running = self._running(record)
        if record.status == "running" and not running:
            self._wait_exited(record, 2.0)  # ended: the watcher is recording its exit code
        state = record.status if record.status != "starting" else "created"
        if record.status == "running" and not running:
            state = "exited"  # ended; the watcher is recording it
        return ContainerInfo(
            id=record.id,
            name=record.name,
            labels=dict(record.labels),
            state=state,
            running=running,
            exit_code=record.exit_code if state == "exited" else None,
            started_at=record.started_at,
            finished_at=record.finished_at if state == "exited" else None,
            address=record.address if running else None,
            image=record.image,
            pid=(record.pid or None) if running else None,
        )

    def inspect(self, id_or_name: str) -> ContainerInfo:
        return self._info(self._record(id_or_name))

    def list(self, labels: dict[str, str]) -> builtins.list[ContainerInfo]:
        with self._lock:
            records = [
                r
                for r in self._records.values()
                if all(r.labels.get(k) == v for k, v in labels.items())
            ]
        return [self._info(r) for r in records]

    def logs(
        self, container_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        record = self._record(container_id)
        path = self._dir(record.id) / "log"
        return runc_io.read_log(path, tail, follow, lambda: self._running(record))

    def docker_logs(
        self,
        container_id: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        timestamps: bool = False,
        since: int = 0,
        stdout: bool = True,
        stderr: bool = True,
    ) -> Iterator[bytes]:
        runc_io.check_log_options(timestamps, since)
        chunks = self.logs(container_id, tail=tail, follow=follow)
        if not (stdout or stderr):
            return iter(())
        return runc_io.docker_frames(chunks)

    def exec(self, container_id: str, command: builtins.list[str]) -> ExecResult:
        record = self._record(container_id)
        if not self._running(record):
            raise errors.PermanentDriverError(f"container {record.name} is not running")
        if not command:
            raise errors.PermanentDriverError("exec needs a command")
        proc = self._runc(
            "exec",
            record.id,
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=3600.0,
        )
        return runc_io.exec_result(proc)

    def exec_open(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        stdin: bool = False,
        tty: bool = False,
        size: tuple[int, int] | None = None,
        user: str | None = None,
        env: builtins.list[str] | None = None,
        workdir: str | None = None,
    ) -> ExecSession:
        raise errors.PermanentDriverError(_INTERACTIVE)

    def attach_open(
        self, container_id: str, *, stdin: bool = False, logs: bool = False
    ) -> ExecSession:
        raise errors.PermanentDriverError(_INTERACTIVE)


def _raise_open_files() -> None:
    """One pidfd per running cell is held open: the soft limit on open files is raised to the
    hard one (1024 would stop an agent at about a thousand cells; the cells get their own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _numeric_user(spec: ContainerSpec) -> UserIds:
    """A rootfs cell's user: numeric only (there is no image passwd to look names up in)."""
    if not spec.user:
        return UserIds()
    uid, _, gid = spec.user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise errors.PermanentDriverError(
            f"container {spec.name}: a rootfs cell's user must be numeric (uid[:gid]): {spec.user!r}"
        )
    return UserIds(int(uid), int(gid or uid))
