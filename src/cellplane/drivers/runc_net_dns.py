"""Names on the runc driver's networks: one aardvark-dns for the driver's configuration dir.

The files are the ones the agent's peerdns already knows (`<run dir>/aardvark-dns/<network>`:
first line the listen address, the network's gateway; then one line per cell). They are
edited under `<run dir>/aardvark.lock` (beside the directory, never in it: aardvark-dns parses
every file there except its pid file as a network, and exits on one without a listen address),
written beside the directory and renamed in, and the resolver is told with SIGHUP. It is
started on the first change (it daemonizes and writes `aardvark.pid` in the directory) and
stopped when the driver's last network goes.

aardvark-dns 1.4 (Debian 12's) answers a SIGHUP by closing every socket it listens on,
re-reading its files and binding them again; for those few milliseconds a query is refused or
lost, on every network it serves. Its `run` also returns before it binds anything, and a SIGHUP
that reaches it before its handler is installed ends it. So each change here waits, still under
the lock, until the resolver has bound every listen address anew (read from
`/proc/<pid>/net/udp`): when `attach` returns the cell's name is served, and no restart is
left in flight for the next change to race with.

A change may also leave its wait for later (`set_entry(..., wait=False)`): the runc driver
attaches a cell while it makes the container and waits (`settle`) once `runc run` has returned,
so the resolver rebinds while the container starts rather than before. The wait is then owed:
the next change, under the lock, settles it before it writes or signals, so two restarts are
never in flight together.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from cellplane.drivers import errors
from cellplane.drivers.runc_net_plan import listen_addresses, merge_entry, rebound, udp_listeners

__all__ = ["Resolver", "reload", "reload_and_wait"]

log = logging.getLogger(__name__)

CONF_DIR: Final = "aardvark-dns"
LOCK_FILE: Final = "aardvark.lock"
PID_FILE: Final = "aardvark.pid"
_COMM: Final = "aardvark-dns"
_SEARCH: Final = "/usr/libexec/podman:/usr/lib/podman:/usr/local/libexec/podman"
PORT: Final = 53
#: How long a change waits for the resolver to listen again before it goes on with a warning.
REBIND_WAIT: Final = 2.0


def find_binary() -> str | None:
    return shutil.which("aardvark-dns") or shutil.which("aardvark-dns", path=_SEARCH)


def _headers(conf: Path) -> list[str]:
    headers = []
    for path in conf.iterdir() if conf.is_dir() else ():
        if path.name == PID_FILE or not path.is_file():
            continue
        with contextlib.suppress(OSError), open(path) as f:
            headers.append(f.readline().strip())
    return headers


def _bound(pid: int, port: int) -> dict[str, int] | None:
    """The resolver's listening sockets (address -> inode); None once the process is gone."""
    try:
        return udp_listeners(Path(f"/proc/{pid}/net/udp").read_text(), port)
    except OSError:
        return None


def wait_listening(
    conf: Path, pid: int, before: set[int], port: int = PORT, wait: float = REBIND_WAIT
) -> bool:
    """Wait until resolver `pid` listens on every address its files in `conf` name, on sockets
    not in `before`. False (and a warning) if it did not within `wait` s or went away."""
    want = listen_addresses(_headers(conf))
    deadline = time.monotonic() + wait
    while True:
        now = _bound(pid, port)
        if now is None:
            log.warning("aardvark-dns %d (%s) went away while reloading", pid, conf)
            return False
        if rebound(now, want, before):
            return True
        if time.monotonic() > deadline:
            missing = sorted(a for a in want if a not in now or now[a] in before)
            log.warning(
                "aardvark-dns %d (%s) does not listen on %s after %.0f s: names there do not "
                "resolve until it does",
                pid,
                conf,
                ", ".join(missing),
                wait,
            )
            return False
        time.sleep(0.002)


def reload(pid: int, port: int = PORT) -> set[int] | None:
    """SIGHUP resolver `pid`; the inodes of the sockets it listened on before (what
    `wait_listening` waits to see replaced), None if it is gone."""
    old = _bound(pid, port)
    before = set(old.values()) if old is not None else set()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    return before


def reload_and_wait(conf: Path, pid: int, port: int = PORT, wait: float = REBIND_WAIT) -> bool:
    """SIGHUP resolver `pid` and wait until it has bound its listen addresses anew (see the
    module's docstring). False if it is gone (ProcessLookupError) or did not rebind in time."""
    before = reload(pid, port)
    return before is not None and wait_listening(conf, pid, before, port, wait)


class Resolver:
    """The aardvark-dns of one driver instance (its files live under `run_dir`)."""

    def __init__(self, run_dir: Path, binary: str | None = None) -> None:
        """`binary`: aardvark-dns's path; None: found on PATH or in podman's directories;
        "": none (the files are kept, no resolver runs)."""
        self.base = run_dir
        self.conf = run_dir / CONF_DIR
        self.binary = (binary or None) if binary is not None else find_binary()
        # A reload whose wait is owed (`set_entry(..., wait=False)`): the resolver's pid and
        # the sockets it listened on before. Changed only under the lock.
        self._owed: tuple[int, set[int]] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The file lock (other processes on the same run dir) with any owed wait settled."""
        self.conf.mkdir(parents=True, exist_ok=True)
        with open(self.base / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._settle_owed()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _settle_owed(self) -> None:
        owed, self._owed = self._owed, None
        if owed is None:
            return
        pid, before = owed
        if not wait_listening(self.conf, pid, before) and self.pid() is None:
            self._start()  # it went away while reloading

    def settle(self) -> None:
        """Return once the last change is served (a no-op when none left its wait owed)."""
        if self._owed is not None:
            with self._locked():
                pass

    def _write(self, network: str, text: str) -> None:
        tmp = self.base / f".{network}.dns"
        tmp.write_text(text)
        os.replace(tmp, self.conf / network)

    def set_network(self, network: str, gateway: str) -> None:
        """The network's file with `gateway` as its listen address (entries kept)."""
        with self._locked():
            path = self.conf / network
            text = path.read_text() if path.is_file() else ""
            if text.splitlines()[:1] == [gateway] and self.pid() is not None:
                return
            self._write(network, merge_entry(text, gateway, "", None))
            self._signal()

    def set_entry(
        self, network: str, container_id: str, line: str | None, *, wait: bool = True
    ) -> None:
        """Replace (None: remove) the line of `container_id` in `network`'s file, then reload;
        `wait=False`: return once the resolver is signalled, the wait owed (`settle`)."""
        with self._locked():
            path = self.conf / network
            if not path.is_file():
                return
            text = path.read_text()
            header = text.splitlines()[0]
            new = merge_entry(text, header, container_id, line)
            if new == text:
                return
            self._write(network, new)
            self._signal(wait=wait)

    def remove_network(self, network: str) -> None:
        """Drop the network's file; stop the resolver when no network is left."""
        with self._locked():
            (self.conf / network).unlink(missing_ok=True)
            if self.networks():
                self._signal()
            else:
                self._stop()

    def networks(self) -> list[str]:
        if not self.conf.is_dir():
            return []
        return sorted(p.name for p in self.conf.iterdir() if p.name != PID_FILE and p.is_file())

    def pid(self) -> int | None:
        """The running resolver of this directory, None if there is none (a stale pid file
        naming another process, or a resolver of another directory, is not ours)."""
        try:
            pid = int((self.conf / PID_FILE).read_text().strip())
            if Path(f"/proc/{pid}/comm").read_text().strip() != _COMM:
                return None
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if str(self.conf).encode() in args else None

    def reload(self) -> None:
        """SIGHUP the resolver, or start it if none runs."""
        with self._locked():
            self._signal()

    def _signal(self, *, wait: bool = True) -> None:
        # Under the lock: two callers that both found no resolver would start two, and the pid
        # file would name only one of them.
        pid = self.pid()
        before = reload(pid) if pid is not None else None
        if pid is None or before is None:
            self._start()
            return
        self._owed = (pid, before)
        if wait:
            self._settle_owed()

    def _start(self) -> None:
        if not self.networks():
            return
        if self.binary is None:
            log.warning("aardvark-dns not found: cells on runc networks do not resolve names")
            return
        # It forks into the background once listening; its pid file is written before this
        # returns (the next caller, after the lock, finds it). Its output goes to a file: a
        # pipe would be held open by the daemon.
        logfile = self.base / "aardvark.log"
        with open(logfile, "ab") as out:
            done = subprocess.run(
                [self.binary, "--config", str(self.conf), "-p", str(PORT), "run"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                check=False,
            )
        if done.returncode != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
            raise errors.PermanentDriverError(
                f"aardvark-dns for {self.conf} exited {done.returncode}: {' / '.join(tail)}"
            )
        pid = self.pid()  # it wrote its pid file before it returned, and binds after
        if pid is not None:
            wait_listening(self.conf, pid, set())

    def stop(self) -> None:
        with self._locked():
            self._stop()

    def _stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        (self.conf / PID_FILE).unlink(missing_ok=True)
