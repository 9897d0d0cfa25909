"""Names of the cells on other hosts, in this host's resolver (aardvark-dns) configuration.

aardvark-dns reads one file per network under `<run dir>/aardvark-dns/` and reloads on SIGHUP
(its pid is in `aardvark.pid` there). The engine (netavark) edits these files under the lock
file `<run dir>/aardvark.lock`, beside that directory, never in it; the agent takes the same
lock, merges its entries (`overlay.merge_peer_entries`) and, when something changed, signals the
resolver and waits, still under the lock, until it listens again
(`runc_net_dns.reload_and_wait`). The run dir is the engine's (`PodmanService.network_run_dir`).

Nothing but network files may appear in the resolver's directory, even for an instant: on a
reload aardvark-dns parses every file there except its pid file as a network, and a file without
a listen address on its first line (an empty lock file, a half-written temporary) makes it exit.
So the new text is written beside the directory and renamed into it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cellplane.agent.overlay import PeerName, merge_peer_entries
from cellplane.drivers.runc_net_dns import reload_and_wait

__all__ = ["sync"]

RESOLVER_DIR: Final = "aardvark-dns"
LOCK_FILE: Final = "aardvark.lock"
PID_FILE: Final = "aardvark.pid"
_RESOLVER_COMM: Final = "aardvark-dns"


def sync(base: Path, network: str, peers: Sequence[PeerName]) -> bool:
    """Make `peers` the agent's entries of `network`; True if the file changed.

    Nothing is done while the engine has no file for the network (no local container runs on
    it yet, so no resolver listens on it): the next pass after a local start adds them.
    """
    conf = base / RESOLVER_DIR
    path = conf / network
    if not path.is_file():
        return False
    # An agent before this fix kept its lock file in the resolver's directory; the resolver
    # exits on its next reload while that file is there.
    (conf / LOCK_FILE).unlink(missing_ok=True)
    with open(base / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text()
            new = merge_peer_entries(text, peers)
            if new is None:
                return False
            tmp = base / f".{network}.cellplane"
            tmp.write_text(new)
            os.replace(tmp, path)
            # Under the lock, as the runc driver's changes: the resolver's reload is over before
            # anyone else edits or signals (see `drivers.runc_net_dns`).
            pid = _resolver_pid(conf / PID_FILE)
            if pid is not None:
                reload_and_wait(conf, pid)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return True


def _resolver_pid(pid_file: Path) -> int | None:
    """The pid in the resolver's pid file if it still is a resolver (a stale pid file may name
    another process by now)."""
    try:
        pid = int(pid_file.read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() == _RESOLVER_COMM:
            return pid
    except (OSError, ValueError):
        pass
    return None
