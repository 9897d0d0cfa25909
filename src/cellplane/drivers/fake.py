"""`FakeDriver`: an in-memory `Driver` for unit tests of the agent's pure logic.

Used only by tests (the agent's reconcile loop, status reporting, cleanup): it keeps
containers, networks, volumes and images in dicts, records every call in `calls`, and
lets a test change the world behind the agent's back (`mark_exited`, `mark_removed`) or
make the next call of a method fail (`fail_next`). It never touches an engine, the clock
or random numbers: ids and addresses are counters, so tests are deterministic.
"""

from __future__ import annotations

import builtins
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cellplane.drivers import errors
from cellplane.drivers.base import (
    ContainerInfo,
    ContainerSpec,
    ExecResult,
    NetworkSpec,
    PortSpec,
)

__all__ = ["FakeContainer", "FakeDriver", "FakeExecSession"]

ExecHandler = Callable[[str, builtins.list[str]], ExecResult]


@dataclass
class FakeContainer:
    """One container as the fake engine holds it; tests may read it freely."""

    id: str
    spec: ContainerSpec
    state: str = "created"
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    address: str | None = None
    logs: bytes = b""
    starts: int = 0
    ports: builtins.list[PortSpec] = field(default_factory=list)
    # (cpu, memory_mb) as `apply_limits` last set them on the running container; None: never.
    limits: tuple[float, int] | None = None

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.spec.name,
            labels=dict(self.spec.labels),
            state=self.state,
            running=self.state == "running",
            exit_code=self.exit_code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            address=self.address,
            image=self.spec.image,
            ports=list(self.ports),
        )


def _matches(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


class FakeDriver:
    """In-memory `Driver`. Timestamps are step counters rendered as strings."""

    def __init__(self, images: builtins.list[str] | None = None) -> None:
        self.images: set[str] = set(images or [])
        self.networks: dict[str, dict[str, str]] = {}
        self.internal_networks: set[str] = set()
        self.network_specs: dict[str, NetworkSpec] = {}
        self.volumes: dict[str, dict[str, str]] = {}
        # Where volume data lives (`volume_path`): set by tests that copy volumes.
        self.volume_root: Path | None = None
        self.containers: dict[str, FakeContainer] = {}
        self.calls: builtins.list[tuple[str, tuple[Any, ...]]] = []
        self.archives: dict[Path, builtins.list[str]] = {}
        self.exec_handler: ExecHandler = lambda _id, _cmd: ExecResult(0, b"")
        self.exec_sessions: builtins.list[FakeExecSession] = []
        self.reachable = True
        self._failures: dict[str, builtins.list[errors.DriverError]] = {}
        self._ids = itertools.count(1)
        self._ticks = itertools.count(1)
        self._host_ports = itertools.count(40000)
        self._lock = threading.RLock()

    # -- test controls ----------------------------------------------------------------

    def fail_next(self, method: str, error: errors.DriverError) -> None:
        """Make the next call of `method` raise `error` (queued, one per call)."""
        with self._lock:
            self._failures.setdefault(method, []).append(error)

    def mark_exited(self, container_id: str, exit_code: int = 0) -> None:
        """The container's process ended on its own."""
        with self._lock:
            box = self._get(container_id)
            box.state, box.exit_code = "exited", exit_code
            box.finished_at = self._now()
            box.address = None

    def mark_removed(self, container_id: str) -> None:
        """Someone removed the container behind the agent's back."""
        with self._lock:
            self.containers.pop(self._get(container_id).id)

    def set_logs(self, container_id: str, data: bytes) -> None:
        with self._lock:
            self._get(container_id).logs = data

    def by_name(self, name: str) -> FakeContainer:
        with self._lock:
            return self._get(name)

    def called(self, method: str) -> builtins.list[tuple[Any, ...]]:
        """The arguments of every recorded call of `method`, in order."""
        with self._lock:
            return [args for name, args in self.calls if name == method]

    # -- internals --------------------------------------------------------------------

    def _record(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if not self.reachable:
            raise errors.TemporaryDriverError("fake engine unreachable")
        queued = self._failures.get(method)
        if queued:
            raise queued.pop(0)

    def _now(self) -> str:
        # RFC 3339 with nanoseconds, like podman; each call is strictly later than the last.
        t = datetime.now(UTC) + timedelta(microseconds=next(self._ticks))
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

    def _get(self, id_or_name: str) -> FakeContainer:
        box = self.containers.get(id_or_name)
        if box is not None:
            return box
        for candidate in self.containers.values():
            if candidate.spec.name == id_or_name:
                return candidate
        raise errors.ContainerNotFound(f"no such container: {id_or_name}")

    # -- Driver -----------------------------------------------------------------------

    def ping(self) -> None:
        with self._lock:
            self._record("ping")

    def ensure_network(self, spec: NetworkSpec) -> None:
        name, labels, internal = spec.name, spec.labels, spec.internal
        with self._lock:
            self._record("ensure_network", name, dict(labels), internal, spec.prefix_length)
            self.networks.setdefault(name, dict(labels))
            self.network_specs[name] = spec
            if internal:
                self.internal_networks.add(name)

    def pin_network_bridge(self, name: str) -> None:
        """Nothing: the fake has no bridges."""

    def remove_network(self, name: str) -> None:
        with self._lock:
            self._record("remove_network", name)
            if any(
                c.spec.network == name or name in c.spec.extra_networks
                for c in self.containers.values()
            ):
                raise errors.PermanentDriverError(f"network {name} is being used")
            self.networks.pop(name, None)
            self.network_specs.pop(name, None)
            self.internal_networks.discard(name)

    def list_networks(self, labels: dict[str, str]) -> builtins.list[str]:
        with self._lock:
            self._record("list_networks", dict(labels))
            return sorted(n for n, have in self.networks.items() if _matches(have, labels))

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        with self._lock:
            self._record("ensure_volume", name, dict(labels))
            self.volumes.setdefault(name, dict(labels))

    def remove_volume(self, name: str) -> None:
        with self._lock:
            self._record("remove_volume", name)
            for box in self.containers.values():
                if any(m.volume == name for m in box.spec.mounts):
                    raise errors.VolumeInUse(f"volume {name} is being used by {box.id}")
            self.volumes.pop(name, None)

    def list_volumes(self, labels: dict[str, str]) -> builtins.list[str]:
        with self._lock:
            self._record("list_volumes", dict(labels))
            return sorted(n for n, have in self.volumes.items() if _matches(have, labels))

    def volume_path(self, name: str) -> Path:
        with self._lock:
            self._record("volume_path", name)
            if name not in self.volumes or self.volume_root is None:
                raise errors.PermanentDriverError(f"no such volume {name}")
            path = self.volume_root / name
            path.mkdir(parents=True, exist_ok=True)
            return path

    def has_image(self, ref: str) -> bool:
        with self._lock:
            self._record("has_image", ref)
            return ref in self.images

    def load_image(self, path: Path) -> builtins.list[str]:
        with self._lock:
            self._record("load_image", path)
            names = self.archives.get(path, [f"{path.stem}:latest"])
            self.images.update(names)
            return list(names)

    def remove_image(self, ref: str) -> None:
        with self._lock:
            self._record("remove_image", ref)
            if ref not in self.images:
                raise errors.ImageNotFound(f"no such image: {ref}")
            self.images.discard(ref)

    def create(self, spec: ContainerSpec) -> str:
        with self._lock:
            self._record("create", spec)
            if any(c.spec.name == spec.name for c in self.containers.values()):
                raise errors.NameConflict(f"the container name {spec.name} is already in use")
            if spec.image is not None and spec.image not in self.images:
                raise errors.ImageNotFound(f"no such image: {spec.image}")
            for wanted in ([spec.network] if spec.network else []) + list(spec.extra_networks):
                if wanted not in self.networks:
                    raise errors.NetworkNotFound(f"network not found: {wanted}")
            for mount in spec.mounts:
                if mount.host_path is None:
                    self.volumes.setdefault(mount.volume, {})
                elif not Path(mount.host_path).exists():
                    raise errors.PermanentDriverError(f"no such host path {mount.host_path}")
            container_id = f"fake{next(self._ids):060d}"
            self.containers[container_id] = FakeContainer(id=container_id, spec=spec)
            return container_id

    def start(self, container_id: str) -> None:
        with self._lock:
            self._record("start", container_id)
            box = self._get(container_id)
            if box.state == "running":
                return
            box.state, box.exit_code, box.finished_at = "running", None, None
            box.limits = None  # a start runs without the CPU quota, as on a real engine
            box.started_at = self._now()
            box.starts += 1
            if box.spec.network is not None:
                net = sorted(self.networks).index(box.spec.network)
                box.address = f"10.89.{net}.{int(box.id[4:]) % 250 + 2}"
            box.ports = [
                replace(p, host_port=p.host_port or next(self._host_ports)) for p in box.spec.ports
            ]

    def apply_limits(self, container_id: str, cpu: float, memory_mb: int) -> None:
        with self._lock:
            self._record("apply_limits", container_id, cpu, memory_mb)
            box = self._get(container_id)
            if box.state != "running":
                raise errors.PermanentDriverError(f"container {box.id} is not running")
            box.limits = (cpu, memory_mb)

    def stop(self, container_id: str, timeout: float = 10.0) -> None:
        with self._lock:
            self._record("stop", container_id, timeout)
            if self._get(container_id).state == "running":
                self.mark_exited(container_id, 143)

    def kill(self, container_id: str) -> None:
        with self._lock:
            self._record("kill", container_id)
            if self._get(container_id).state == "running":
                self.mark_exited(container_id, 137)

    def remove(self, container_id: str, force: bool = True) -> None:
        with self._lock:
            self._record("remove", container_id, force)
            box = self._get(container_id)
            if box.state == "running" and not force:
                raise errors.PermanentDriverError(f"container {box.id} is running")
            del self.containers[box.id]

    def inspect(self, id_or_name: str) -> ContainerInfo:
        with self._lock:
            self._record("inspect", id_or_name)
            return self._get(id_or_name).info()

    def list(self, labels: dict[str, str]) -> builtins.list[ContainerInfo]:
        with self._lock:
            self._record("list", dict(labels))
            return [c.info() for c in self.containers.values() if _matches(c.spec.labels, labels)]

    def logs(
        self, container_id: str, tail: int | None = None, follow: bool = False
    ) -> Iterator[bytes]:
        with self._lock:
            self._record("logs", container_id, tail, follow)
            lines = self._get(container_id).logs.splitlines(keepends=True)
        if tail is not None:
            lines = lines[-tail:] if tail else []
        return iter(lines)

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
        """The fake's log lines as stdout frames (it keeps no stderr and no times)."""
        lines = list(self.logs(container_id, tail=tail, follow=follow)) if stdout else []
        return iter([b"\x01\x00\x00\x00" + len(line).to_bytes(4, "big") + line for line in lines])

    def exec(self, container_id: str, command: builtins.list[str]) -> ExecResult:
        with self._lock:
            self._record("exec", container_id, list(command))
            box = self._get(container_id)
            if box.state != "running":
                raise errors.PermanentDriverError(f"container {box.id} is not running")
            handler = self.exec_handler
        return handler(box.id, list(command))

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
    ) -> FakeExecSession:
        with self._lock:
            extra = {"user": user, "env": env, "workdir": workdir}
            given = {k: v for k, v in extra.items() if v is not None}
            args = (stdin, tty, size, given) if given else (stdin, tty, size)
            self._record("exec_open", container_id, list(command), *args)
            box = self._get(container_id)
            if box.state != "running":
                raise errors.PermanentDriverError(f"container {box.id} is not running")
            handler = self.exec_handler
        session = FakeExecSession(box.id, list(command), handler, stdin=stdin, size=size)
        self.exec_sessions.append(session)
        return session

    def attach_open(
        self, container_id: str, *, stdin: bool = False, logs: bool = False
    ) -> FakeExecSession:
        """The fake's main process echoes its standard input once that is closed (`cat`)."""
        with self._lock:
            self._record("attach_open", container_id, stdin, logs)
            box = self._get(container_id)
        session = FakeExecSession(box.id, [], _no_output, stdin=stdin, size=None)
        session._handler = lambda _cid, _cmd: ExecResult(exit_code=0, output=bytes(session.stdin))
        self.exec_sessions.append(session)
        return session


def _no_output(container_id: str, command: builtins.list[str]) -> ExecResult:
    return ExecResult(exit_code=0, output=b"")


class FakeExecSession:
    """An interactive exec of the fake: once stdin is closed (at once without stdin), the exec
    handler runs and its output comes as stdout; what was written and resized is recorded."""

    def __init__(
        self,
        container_id: str,
        command: builtins.list[str],
        handler: ExecHandler,
        *,
        stdin: bool,
        size: tuple[int, int] | None,
    ) -> None:
        self.container_id = container_id
        self.command = command
        self.stdin = bytearray()
        self.sizes: builtins.list[tuple[int, int]] = [size] if size else []
        self.closed = False
        self._handler = handler
        self._stdin_done = threading.Event()
        if not stdin:
            self._stdin_done.set()
        self._result: ExecResult | None = None
        self._sent = False

    def read(self) -> tuple[int, bytes] | None:
        self._stdin_done.wait()
        if self._result is None:
            self._result = self._handler(self.container_id, list(self.command))
        if self._sent or not self._result.output:
            return None
        self._sent = True
        return 1, self._result.output

    def write(self, data: bytes) -> None:
        self.stdin += data

    def close_stdin(self) -> None:
        self._stdin_done.set()

    def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))

    def exit_code(self, timeout: float = 5.0) -> int | None:
        return None if self._result is None else self._result.exit_code

    @property
    def failure(self) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True
        self._stdin_done.set()
