"""Names of the cells on other hosts, in this host's resolver (aardvark-dns) configuration.

aardvark-dns reads one file per network under `<run dir>/aardvark-dns/` and reloads on SIGHUP
(its pid is in `aardvark.pid` there). The engine edits these files under the lock file
`aardvark.lock`; the agent takes the same lock, merges its entries (`overlay.merge_peer_entries`)
and signals the resolver when something changed. The run dir is the engine's
(`PodmanService.network_run_dir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from cellplane.agent.overlay import PeerName, merge_peer_entries

__all__ = ["sync"]


def sync(base: Path, network: str, peers: Sequence[PeerName]) -> bool:
    """Make `peers` the agent's entries of `network`; True if the file changed.

    Nothing is done while the engine has no file for the network (no local container runs on
    it yet, so no resolver listens on it): the next pass after a local start adds them.
    """
    conf = base / "aardvark-dns"
    path = conf / network
    if not path.is_file():
        return False
    with open(conf / "aardvark.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text()
            new = merge_peer_entries(text, peers)
            if new is None:
                return False
            tmp = path.with_name(f".{network}.cellplane")
            tmp.write_text(new)
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _reload(conf / "aardvark.pid")
    return True


def _reload(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
