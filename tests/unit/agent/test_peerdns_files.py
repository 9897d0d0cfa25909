"""The agent's edits of the resolver's (aardvark-dns) files: what lands in its directory.

aardvark-dns parses every file of its directory but its pid file as a network and exits on a
file without a listen address, so the agent's lock and temporaries must stay out of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cellplane.agent import peerdns
from cellplane.agent.overlay import PEER_ID_PREFIX, PeerName

ENGINE_LINE = "a" * 64 + " 10.89.0.2  web1"
PEERS = [PeerName("cell-1", "peer1", "10.89.0.9")]


def _network(tmp_path: Path) -> Path:
    conf = tmp_path / "aardvark-dns"
    conf.mkdir()
    path = conf / "net1"
    path.write_text(f"10.89.0.1\n{ENGINE_LINE}\n")
    return path


def test_sync_adds_the_peers_and_leaves_only_network_files_in_the_resolvers_directory(
    tmp_path: Path,
) -> None:
    path = _network(tmp_path)
    assert peerdns.sync(tmp_path, "net1", PEERS) is True
    lines = path.read_text().splitlines()
    assert lines[:2] == ["10.89.0.1", ENGINE_LINE]
    assert lines[2].startswith(PEER_ID_PREFIX) and lines[2].endswith(" 10.89.0.9  peer1")
    assert sorted(p.name for p in path.parent.iterdir()) == ["net1"]
    assert (tmp_path / "aardvark.lock").is_file()  # the engine's lock, beside the directory
    assert peerdns.sync(tmp_path, "net1", PEERS) is False  # unchanged: nothing written


def test_sync_removes_a_lock_file_an_older_agent_left_in_the_resolvers_directory(
    tmp_path: Path,
) -> None:
    path = _network(tmp_path)
    (path.parent / "aardvark.lock").touch()
    peerdns.sync(tmp_path, "net1", PEERS)
    assert sorted(p.name for p in path.parent.iterdir()) == ["net1"]


def test_sync_does_nothing_for_a_network_without_a_file(tmp_path: Path) -> None:
    (tmp_path / "aardvark-dns").mkdir()
    assert peerdns.sync(tmp_path, "net1", PEERS) is False
    assert list((tmp_path / "aardvark-dns").iterdir()) == []


# A child that blocks SIGHUP, names itself `comm`, and on a line from stdin prints whether a
# SIGHUP is pending: kill() marks a blocked signal pending before it returns, so no waiting.
_CHILD = """
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
open("/proc/self/comm", "w").write(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
print(signal.SIGHUP in signal.sigpending(), flush=True)
"""


def _signalled(tmp_path: Path, comm: str) -> bool:
    path = _network(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, comm],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        (path.parent / "aardvark.pid").write_text(str(child.pid))
        assert peerdns.sync(tmp_path, "net1", PEERS) is True
        child.stdin.write("\n")
        child.stdin.flush()
        return child.stdout.readline().strip() == "True"
    finally:
        child.kill()
        child.wait()


def test_sync_signals_the_resolver_named_in_its_pid_file(tmp_path: Path) -> None:
    assert _signalled(tmp_path, "aardvark-dns")


def test_sync_does_not_signal_a_process_that_is_not_the_resolver(tmp_path: Path) -> None:
    """A stale pid file naming another process by now: that process is left alone."""
    assert not _signalled(tmp_path, "python-other")
