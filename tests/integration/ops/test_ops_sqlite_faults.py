"""SQLite under pressure, against a real server process (no agent or engine is needed):

* other writers hold the database's write lock (another process, as a backup or a script
  would) while 16 clients write at once: every write succeeds, none is a 500;
* a lock held past the busy timeout: the write is refused with 503 and Retry-After, nothing
  is changed, reads go on, and the same request succeeds once the lock is gone;
* the data directory's file system is full (a small tmpfs mounted on ``server/``): writes are
  refused with 507 and say why, reads go on, the database stays intact, and writes work again
  once space is freed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cellplane.testing.harness import Deployment

pytestmark = pytest.mark.integration


def _projects(http: httpx.Client) -> set[str]:
    r = http.get("/v1/projects", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return {p["name"] for p in r.json()["items"]}


def _create(http: httpx.Client, name: str, key: str | None = None) -> httpx.Response:
    return http.post(
        "/v1/projects",
        json={"name": name},
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
    )


def _http(d: Deployment) -> httpx.Client:
    return httpx.Client(
        base_url=d.url, headers={"Authorization": f"Bearer {d.admin_token}"}, timeout=120
    )


def _integrity(db: Path) -> list[tuple[str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


@pytest.fixture
def server() -> Iterator[Deployment]:
    """A server with the default busy timeout (30 s)."""
    d = Deployment()
    try:
        d.start_server()
        yield d
    finally:
        d.close()


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """A server whose writes wait at most 3 s for the lock."""
    monkeypatch.setenv("CELLPLANE_DB_BUSY_TIMEOUT_S", "3")
    d = Deployment()
    try:
        d.start_server()
        yield d
    finally:
        d.close()


class LockHolder:
    """Another process's writer: takes SQLite's write lock for `hold` seconds, again and again."""

    def __init__(self, db: Path, hold: float, gap: float) -> None:
        self.db, self.hold, self.gap = db, hold, gap
        self.stop = threading.Event()
        self.times = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = sqlite3.connect(self.db, timeout=60, isolation_level=None)
        try:
            while not self.stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                self.stop.wait(self.hold)
                conn.execute("COMMIT")
                self.times += 1
                self.stop.wait(self.gap)
        finally:
            conn.close()

    def __enter__(self) -> LockHolder:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_concurrent_writers_and_a_foreign_lock_never_give_a_500(server: Deployment) -> None:
    db = server.data_dir / "server" / "cellplane.db"
    names = [f"busy-{i:03d}" for i in range(160)]
    with _http(server) as http:
        before = _projects(http)
        # Held for 0.3 s of every 0.4 s: every API write waits for it (and for the others).
        with LockHolder(db, hold=0.3, gap=0.1) as holder, ThreadPoolExecutor(16) as pool:
            codes = Counter(r.status_code for r in pool.map(lambda n: _create(http, n), names))
        assert holder.times >= 2, holder.times  # the lock really was contended
        assert codes == {201: len(names)}, codes
        assert _projects(http) == before | set(names)
    assert _integrity(db) == [("ok",)]


def test_a_lock_held_past_the_busy_timeout_is_a_clear_503(impatient: Deployment) -> None:
    db = impatient.data_dir / "server" / "cellplane.db"
    with _http(impatient) as http:
        before = _projects(http)
        holder = sqlite3.connect(db, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            r = _create(http, "too-late", key="k-too-late")
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1"
            body = r.json()
            assert body["title"] == "Database busy" and "nothing was changed" in body["detail"]
            assert _projects(http) == before  # reads are not blocked (WAL)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        r = _create(http, "too-late", key="k-too-late")  # the client's retry
        assert r.status_code == 201, r.text
        assert _projects(http) == before | {"too-late"}


@pytest.fixture
def small_disk() -> Iterator[Deployment]:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (this suite runs as root in CI)")
    d = Deployment()
    server_dir = d.data_dir / "server"
    server_dir.mkdir(mode=0o700)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "cp-ops-full", str(server_dir)],
        check=True,
    )
    try:
        d.start_server()
        yield d
    finally:
        d.stop_server()
        subprocess.run(["umount", "-l", str(server_dir)], check=False)
        d.close()


def _fill(directory: Path) -> Path:
    """Fill the file system of `directory` to the last block; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def test_a_full_data_directory_refuses_writes_clearly_and_recovers(
    small_disk: Deployment,
) -> None:
    d = small_disk
    server_dir = d.data_dir / "server"
    db = server_dir / "cellplane.db"
    with _http(d) as http:
        assert _create(http, "before-full").status_code == 201
        before = _projects(http)
        filler = _fill(server_dir)
        assert os.statvfs(server_dir).f_bavail == 0
        # A write that needs new pages: 40 projects' worth of rows and audit.
        answers = [_create(http, f"full-{i:02d}", key=f"k-full-{i:02d}") for i in range(40)]
        codes = Counter(r.status_code for r in answers)
        assert 500 not in codes, codes
        refused = [r for r in answers if r.status_code != 201]
        assert refused, codes  # the disk really was full
        assert {r.status_code for r in refused} == {507}, codes
        body = refused[0].json()
        assert body["type"].endswith("/storage-full")
        assert "data directory is full" in body["detail"]
        made = {f"full-{i:02d}" for i, r in enumerate(answers) if r.status_code == 201}
        assert _projects(http) == before | made  # reads go on; a refused write changed nothing
        assert d.server_proc is not None and d.server_proc.poll() is None

        filler.unlink()  # space is back
        retried = [_create(http, f"full-{i:02d}", key=f"k-full-{i:02d}") for i in range(40)]
        assert Counter(r.status_code for r in retried) == {201: 40}
        assert _projects(http) == before | {f"full-{i:02d}" for i in range(40)}
        assert http.get("/readyz").status_code == 200
    assert _integrity(db) == [("ok",)]
