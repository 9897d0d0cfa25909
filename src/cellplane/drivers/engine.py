"""`PodmanService`: the host agent's own podman engine, confined to one data directory.

The agent (and `cellplane up`, and the integration tests) call `PodmanService(dir).start()`
to get a socket URL for `PodmanDriver`. Everything the engine writes (image and container
storage, run state, network definitions, events, logs, temporary files) lives under that
directory: the machine's /etc/containers and /var/lib/containers are never written.

The service runs in its own session so that a Ctrl-C aimed at the agent does not kill it;
containers run under conmon and outlive a restart of the service. A `start()` that finds
a service from an earlier run still answering on the socket reuses it.

Host packages (Debian 12): podman runc conmon netavark aardvark-dns iptables
catatonit uidmap slirp4netns fuse-overlayfs golang-github-containers-common.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Final

from cellplane.drivers import errors
from cellplane.drivers.base import DEFAULT_ULIMITS
from cellplane.drivers.podman_guard import NetworkGuard

__all__ = [
    "SANDBOX_RUNTIME",
    "SHARED_NETWORK_RUN_DIR",
    "SOCKET_PATH_MAX",
    "PodmanService",
    "containers_conf",
    "runsc_wrapper",
    "storage_conf",
]

#: The engine-side name of the sandbox runtime (gVisor), as cells ask for it.
SANDBOX_RUNTIME = "runsc"

# sun_path is 108 bytes including the terminating NUL.
SOCKET_PATH_MAX = 107


def _toml_str(value: str | Path) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def runsc_wrapper(runsc: str, platform: str, state_dir: Path) -> str:
    """The script the engine runs as its `runsc` runtime (pure; unit-tested).

    It gives runsc the platform and a state directory of this engine's own, and smooths two
    edges of Debian's runsc (a 2022 build) under podman 4.3:

    * `start` runs in a private mount namespace where /proc/sys/net is hidden: that runsc tells
      the root network namespace by /proc/sys/net/core/rmem_default, which kernels since 6.x
      show in every namespace, so it would refuse every cell's own namespace as "the root one".
      The sandbox itself was created in the cell's namespace; nothing else changes.
    * `exec --tty` (podman's `exec -t`) is passed without `--tty`, a flag that runsc does not
      know and does not need: conmon asks for the terminal twice, in the process description
      (`"terminal": true`) and with `--console-socket`, which runsc takes; it gives the command
      the pseudo-terminal's other end (newer conmon drops `--tty` for every runtime). The
      command has a terminal (`test -t 0`, `stty size` work); gVisor imports it as a host file,
      so `tty` and `/dev/tty` cannot name it, as under `run -t`.
    """
    base = f"{_sh_quote(runsc)} --platform={_sh_quote(platform)} --root={_sh_quote(str(state_dir))}"
    return "\n".join(
        [
            "#!/bin/sh",
            "# Written by cellplane: the agent's sandbox runtime (gVisor); edits are overwritten.",
            "sub=",
            "for arg do",
            "  shift",
            '  case "$arg" in',
            '    start|exec) [ -z "$sub" ] && sub=$arg ;;',
            '    --tty|-tty|-t|--tty=true) [ "$sub" = exec ] && continue ;;',
            "  esac",
            '  set -- "$@" "$arg"',
            "done",
            'if [ "$sub" = start ]; then',
            "  exec unshare --mount sh -c "
            '\'mount -t tmpfs cellplane-hide /proc/sys/net && exec "$0" "$@"\' '
            f'{base} "$@"',
            "fi",
            f'exec {base} "$@"',
            "",
        ]
    )


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def containers_conf(
    tmp_dir: Path,
    network_dir: Path,
    runtime: str = "runc",
    subnet_pool: str | None = None,
    sandbox_runtime: Path | None = None,
) -> str:
    """The containers.conf the service runs with (pure; unit-tested).

    `subnet_pool` (a CIDR split into /24 networks) keeps several engines on one machine
    from handing out the same subnet: each only sees its own network definitions.
    `sandbox_runtime` (the `runsc_wrapper` script) adds the `runsc` runtime, which cells of the
    `sandbox` isolation class ask for by name.
    """
    runtimes = (
        ["", "[engine.runtimes]", f"{SANDBOX_RUNTIME} = [{_toml_str(sandbox_runtime)}]"]
        if sandbox_runtime is not None
        else []
    )
    pool = (
        [f'default_subnet_pools = [{{"base" = {_toml_str(subnet_pool)}, "size" = 24}}]']
        if subnet_pool
        else []
    )
    ulimits = ", ".join(f'"{name}={soft}:{hard}"' for name, soft, hard in DEFAULT_ULIMITS)
    return "\n".join(
        [
            "# Written by cellplane: the agent's own engine; edits are overwritten.",
            "[containers]",
            # Podman's default rlimits exceed this machine's hard limits: every start fails.
            f"default_ulimits = [{ulimits}]",
            'log_driver = "k8s-file"',
            "",
            "[engine]",
            # crun refuses cgroup v1 hybrid hosts; runc works.
            f"runtime = {_toml_str(runtime)}",
            # No systemd session to ask for cgroups or to journal events.
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f"events_logfile_path = {_toml_str(tmp_dir / 'events.log')}",
            f"tmp_dir = {_toml_str(tmp_dir)}",
            f"image_copy_tmp_dir = {_toml_str(tmp_dir)}",
            # Each exec keeps a conmon alive this long so its exit code can be read; the
            # default (300 s) piles up hundreds of idle processes under health checks.
            "exit_command_delay = 10",
            *runtimes,
            "",
            "[network]",
            'network_backend = "netavark"',
            f"network_config_dir = {_toml_str(network_dir)}",
            *pool,
            "",
        ]
    )


def storage_conf(root: Path, run_root: Path) -> str:
    """The storage.conf the service runs with (pure; unit-tested)."""
    return "\n".join(
        [
            "# Written by cellplane: the agent's own engine; edits are overwritten.",
            "[storage]",
            'driver = "overlay"',
            f"graphroot = {_toml_str(root)}",
            f"runroot = {_toml_str(run_root)}",
            "",
        ]
    )


def _answers(sock: Path, timeout: float = 1.0) -> bool:
    """Whether an engine answers `GET /_ping` on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            reply = conn.recv(64)
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Where a rootful podman 4.3 keeps its network run state (see `PodmanService`).
SHARED_NETWORK_RUN_DIR: Final = Path("/run/containers/networks")
#: Where a rootful podman pins its containers' network namespaces (a shared mount point).
NETNS_DIR: Final = Path("/run/netns")

# How a service with `private_networks` starts. On the machine: /run/netns made a shared mount
# point if it is not one yet (as podman itself makes it). Then, in a new mount namespace, every
# mount is made a slave of the machine's (what the engine mounts stays in it) but /run/netns,
# which stays a peer of the machine's: the network namespaces podman pins there must outlive
# this mount namespace, or a service started again (in a new one, after a crash) would not find
# its running containers' namespaces. Last, the engine's own directory over the network run dir.
_PRIVATE_NETWORKS = r"""set -e
mkdir -p "$1" NETRUN NETNS
mountpoint -q NETNS || { mount --bind NETNS NETNS; mount --make-shared NETNS; }
exec unshare --mount --propagation unchanged -- sh -c '
awk "{print \$5}" /proc/self/mountinfo | while read -r m; do
  case "$m" in NETNS|NETNS/*) ;; *) mount --make-slave "$m" 2>/dev/null || true ;; esac
done
mount --bind "$1" NETRUN
shift
exec "$@"' sh "$@"
""".replace("NETRUN", str(SHARED_NETWORK_RUN_DIR)).replace("NETNS", str(NETNS_DIR))


class PodmanService:
    """One `podman system service` confined to `data_dir`.

    `run_dir` holds the engine's volatile state (podman expects it on a tmpfs so that a
    reboot clears it); it defaults to `data_dir / "run"`. `subnet_pool` is the CIDR this
    engine's networks are carved from; give each engine on one machine its own.

    `private_networks`: a rootful podman keeps its network run state (the IPAM database, the
    resolver's configuration and pid file) in /run/containers/networks, whatever its root, so
    engines on one machine (namespace hosts) would share one resolver. With it the service runs
    in a mount namespace of its own where that directory is `network_run_dir`, this engine's;
    /run/netns stays the machine's (`_PRIVATE_NETWORKS`).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        run_dir: Path | None = None,
        podman: str = "podman",
        runtime: str = "runc",
        subnet_pool: str | None = None,
        runsc: str | None = None,
        runsc_platform: str = "ptrace",
        sandbox_creator: bool = False,
        private_networks: bool = False,
    ) -> None:
        self.private_networks = private_networks
        self.data_dir = data_dir.absolute()
        # gVisor's runsc (a path), offered to cells as the `runsc` runtime; None: no sandbox.
        self.runsc = runsc
        self.runsc_platform = runsc_platform
        self.run_dir = (run_dir or self.data_dir / "run").absolute()
        self.podman = podman
        self.runtime = runtime
        self.subnet_pool = subnet_pool
        self.root = self.data_dir / "storage"
        self.network_dir = self.data_dir / "networks"
        self.tmp_dir = self.run_dir / "tmp"
        # The sandbox creator: a second service on the same storage whose default runtime is
        # runsc. Podman 4.3's API cannot choose a runtime per container (the libpod and compat
        # create bodies' runtime fields are ignored), so sandboxed cells are created through it;
        # everything else about them goes through the main service, which knows runsc too.
        self.sandbox_creator = sandbox_creator
        stem = "sandbox-" if sandbox_creator else ""
        self.socket_path = self.data_dir / ("sandbox.sock" if sandbox_creator else "podman.sock")
        self.log_path = self.data_dir / f"{stem}service.log"
        self.pid_path = self.data_dir / f"{stem}service.pid"
        self._start_lock = threading.Lock()
        self.runsc_wrapper_path = self.data_dir / "runsc-runtime"
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        if len(str(self.socket_path).encode()) > SOCKET_PATH_MAX:
            raise ValueError(
                f"socket path {self.socket_path} exceeds {SOCKET_PATH_MAX} bytes; "
                "use a shorter data directory"
            )

    @property
    def socket_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The service's process id, if known (started here or found from an earlier run)."""
        return self._pid

    def sandbox_service(self) -> PodmanService:
        """The sandbox creator of this engine (same storage; see `sandbox_creator`)."""
        if self.runsc is None:
            raise ValueError("this engine has no sandbox runtime (runsc)")
        return PodmanService(
            self.data_dir,
            run_dir=self.run_dir,
            podman=self.podman,
            runtime=self.runtime,
            subnet_pool=self.subnet_pool,
            runsc=self.runsc,
            runsc_platform=self.runsc_platform,
            sandbox_creator=True,
            private_networks=self.private_networks,
        )

    def stop_recorded(self, timeout: float = 10.0) -> None:
        """`stop()` the service this one started, or the one its pid file names (an earlier
        run's, still answering): for the sandbox creator, which nothing else supervises."""
        if self._pid is None:
            self._pid = self._recorded_pid()
        self.stop(timeout)

    def ensure_started(self) -> str:
        """`start()`, one caller at a time (worker threads share one service): the socket URL."""
        with self._start_lock:
            return self.start()

    @property
    def network_run_dir(self) -> Path:
        """Where this engine's network run state is, as the agent reaches it."""
        return self.run_dir / "networks" if self.private_networks else SHARED_NETWORK_RUN_DIR

    def command(self) -> list[str]:
        service = self._service_command()
        if not self.private_networks:
            return service
        return ["sh", "-c", _PRIVATE_NETWORKS, "sh", str(self.network_run_dir), *service]

    def _service_command(self) -> list[str]:
        runtime = ["--runtime", SANDBOX_RUNTIME] if self.sandbox_creator else []
        return [
            self.podman,
            "--root",
            str(self.root),
            "--runroot",
            str(self.run_dir / "storage"),
            "--network-config-dir",
            str(self.network_dir),
            *runtime,
            "system",
            "service",
            "--time=0",
            self.socket_url,
        ]

    def environment(self) -> dict[str, str]:
        """The service's environment: our config files, no user or system config."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "XDG_"))}
        env.update(
            CONTAINERS_CONF=str(self.data_dir / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(self.data_dir / "storage.conf"),
            XDG_CONFIG_HOME=str(self.data_dir / "config"),
            XDG_DATA_HOME=str(self.data_dir / "share"),
            XDG_RUNTIME_DIR=str(self.run_dir / "xdg"),
            TMPDIR=str(self.tmp_dir),
        )
        return env

    def _write_config(self) -> None:
        for path in (
            self.data_dir,
            self.root,
            self.network_dir,
            self.tmp_dir,
            self.run_dir / "xdg",
            self.data_dir / "config",
        ):
            path.mkdir(parents=True, exist_ok=True)
        wrapper = None
        if self.runsc is not None:
            wrapper = self.runsc_wrapper_path
            script = runsc_wrapper(self.runsc, self.runsc_platform, self.run_dir / "runsc")
            tmp = wrapper.with_suffix(".tmp")
            tmp.write_text(script)
            tmp.chmod(0o755)
            tmp.replace(wrapper)
        (self.data_dir / "containers.conf").write_text(
            containers_conf(self.tmp_dir, self.network_dir, self.runtime, self.subnet_pool, wrapper)
        )
        (self.data_dir / "storage.conf").write_text(
            storage_conf(self.root, self.run_dir / "storage")
        )

    def _recorded_pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        # The pid may have been recycled: only trust it if it is our service.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.socket_path).encode() in cmdline else None

    def start(self, timeout: float = 20.0) -> str:
        """Start the service (or adopt the one already answering); return its socket URL."""
        if _answers(self.socket_path):
            self._pid = self._recorded_pid()
            return self.socket_url
        self._write_config()
        # A socket file left by a dead service would make podman fail to bind.
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.environment(),
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._pid = self._process.pid
        # Written whole (readers, such as a supervisor's tests, never see it half-written).
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(f"{self._pid}\n")
        tmp.replace(self.pid_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(self.socket_path, timeout=0.5):
                return self.socket_url
            if self._process.poll() is not None:
                raise errors.TemporaryDriverError(
                    f"podman service exited with {self._process.returncode}: {self._log_tail()}"
                )
            time.sleep(0.05)
        self.stop()
        raise errors.TemporaryDriverError(
            f"podman service did not answer within {timeout}s: {self._log_tail()}"
        )

    def _log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def running(self) -> bool:
        """Whether the service process is alive (False if its pid is not known).

        A process started here is reaped on the way: a killed child would otherwise linger
        as a zombie that `kill(pid, 0)` still finds.
        """
        if self._process is not None and self._process.pid == self._pid:
            return self._process.poll() is None
        return self._pid is not None and _alive(self._pid)

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether the service answers `GET /_ping` within `timeout` seconds."""
        return _answers(self.socket_path, timeout)

    def exit_description(self) -> str:
        """How the last known service process ended, for messages ("killed by signal 9")."""
        code = self._process.poll() if self._process is not None else None
        if code is None:
            return "the process is gone"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exited with code {code}"

    def kill(self) -> None:
        """SIGKILL the service process now (one that no longer answers); containers survive."""
        pid = self._pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._wait(pid, 5.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the service process; its containers keep running under conmon."""
        pid = self._pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait(pid, 5.0)
        self._pid = None
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()

    def shutdown(self, timeout: float = 10.0) -> list[str]:
        """Stop the service for good (the agent is exiting) and detach what its storage left
        mounted under its directories; returns the mount points detached.

        While a container runs, containers/storage keeps its rootfs (`overlay/<id>/merged`),
        its /dev/shm and the overlay directory itself (bind-mounted on itself, private) mounted
        in this mount namespace, and nothing unmounts them once the service is gone: the data
        directory could not be removed. They are detached lazily: a running container keeps
        its own copies in its own mount namespace and runs on; the next service mounts again
        what a container needs (exec, stop, start and removal work on adopted containers).
        `stop` (a restart by the supervisor) leaves them: the next service uses them.
        """
        self.stop(timeout)
        if self.answers(0.5):  # a service this object does not know the pid of: still in use
            return []
        return self.release_mounts()

    def release_mounts(self) -> list[str]:
        """Detach (lazily, deepest first) every mount under the data and run directories;
        for a stopped service only. Returns the mount points detached."""
        detached = []
        for mount in sorted(self._mounts_under_data_dir(), key=len, reverse=True):
            done = subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
            if done.returncode == 0:
                detached.append(mount)
        return detached

    def destroy(self) -> None:
        """Stop the service and delete the data directory with all images and volumes.

        For tests and for a host leaving the platform; the caller removes containers first.
        """
        self.shutdown()
        with contextlib.suppress(errors.DriverError, OSError):  # no iptables: no chains either
            NetworkGuard(self.socket_url).remove()  # its networks' isolation rules
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.run_dir.is_relative_to(self.data_dir):
            return
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def _mounts_under_data_dir(self) -> list[str]:
        prefixes = (f"{self.data_dir}/", f"{self.run_dir}/")
        try:
            lines = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return []
        # /proc/mounts escapes spaces and other odd bytes as octal (\040).
        points = [line.split()[1].encode().decode("unicode_escape") for line in lines if line]
        return [p for p in points if p.startswith(prefixes)]

    def _wait(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
