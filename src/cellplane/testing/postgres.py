"""A private, throw-away PostgreSQL server (for the PostgreSQL tests and benchmarks).

`PostgresServer` initialises a cluster in a temporary directory owned by the `postgres` user,
starts it with `pg_ctl` listening only on a unix socket in that directory (no TCP), and stops it
and removes the directory in `stop`. `find_bindir` finds the binaries (None without them).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from cellplane.testing.harness import free_port

__all__ = ["PG_USER", "PostgresServer", "find_bindir"]

PG_USER = "postgres"


def find_bindir() -> Path | None:
    """The directory with initdb/pg_ctl/postgres, or None when PostgreSQL is not installed."""
    candidates: list[str] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for cand in candidates:
        path = Path(cand)
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


class PostgresServer:
    """One throw-away PostgreSQL cluster, reachable only through its socket directory."""

    # A session time zone far from UTC, so timestamps that lose their zone show up as wrong.
    TIMEZONE = "Asia/Kathmandu"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="cp-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.sockdir = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.started = False

    def run(self, tool: str, *args: str, timeout: float = 60) -> str:
        """Run a PostgreSQL tool (as the `postgres` user when we are root); returns stdout."""
        cmd = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
                f"{self.log_tail()}"
            )
        return result.stdout.strip()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def start(self) -> None:
        self.sockdir.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            for path in (self.root, self.sockdir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.run("initdb", "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8")
        settings = {
            "listen_addresses": "''",  # no TCP at all: only the socket below
            "unix_socket_directories": str(self.sockdir),
            "port": str(self.port),
            "max_connections": "200",
            "timezone": self.TIMEZONE,
            # A throw-away cluster: durability buys nothing here.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.started = True

    def psql(self, sql: str, database: str = "postgres") -> str:
        where = ["-h", str(self.sockdir), "-p", str(self.port), "-U", PG_USER, "-d", database]
        return self.run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *where, "-c", sql)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@/{database}?host={self.sockdir}&port={self.port}"

    def create_database(self, stem: str = "cp") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        try:
            if self.started:
                pid = self._postmaster_pid()
                try:
                    self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    if pid is not None:  # our own postmaster only, by its recorded pid
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
