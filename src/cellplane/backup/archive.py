"""Back up and restore the server's part of a data directory (`cellplane admin backup|restore`).

What a backup holds: a consistent copy of the SQLite database, taken with SQLite's online backup
API while the server runs (one read transaction: in WAL mode writers carry on meanwhile), then
every other file of ``<data_dir>/server``: the CA and its keys, the token signing keys, the TLS
files, the join token, uploaded images. The database is copied first, so every file it names
already exists when the files are copied. The whole is a tar stream sealed with a passphrase
(`cellplane.backup.sealed`), written to a temporary file next to the output and renamed into
place (mode 0600) when complete.

A restore reads and checks the whole backup into a staging directory inside the data directory
(the passphrase, every chunk's authentication, the member names, the database's integrity)
before it touches ``server/``; anything wrong leaves the data directory as it was. It refuses a
non-empty ``server/`` unless forced, and then keeps the old one aside rather than deleting it.

The agent's part of the data directory (``agent/``: its engine, the containers' storage) is not in
the backup: it belongs to the host, and a restored server finds the running cells there.
PostgreSQL deployments are refused: their database is backed up with the database's own tools.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from cellplane.backup.sealed import SealedReader, SealedWriter, SealError

__all__ = ["BackupError", "BackupSummary", "backup", "database_path", "restore"]

FORMAT = "cellplane-backup/1"
DB_NAME = "cellplane.db"
MANIFEST = "manifest.json"
# The database's own companions: the snapshot replaces them.
_DB_FILES = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
_BUSY_TIMEOUT_S = 60.0


class BackupError(Exception):
    """A backup or restore that cannot be done; the message names the problem."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    files: int
    bytes: int
    db_revision: str | None
    created_at: str


def _server_dir(data_dir: Path) -> Path:
    return data_dir / "server"


def database_path(data_dir: Path, database_url: str | None) -> Path:
    """The SQLite file a backup copies: the data directory's own; anything else is refused."""
    own = _server_dir(data_dir) / DB_NAME
    if not database_url:
        return own
    if not database_url.startswith("sqlite"):
        scheme = database_url.partition(":")[0]
        raise BackupError(
            f"this deployment's database is {scheme} (CELLPLANE_DATABASE_URL), and "
            "`cellplane admin backup` copies the data directory's SQLite database only: back up "
            "PostgreSQL with its own tools (pg_dump, or your provider's snapshots) and the "
            "data directory's server/ folder (CA, signing keys) beside it"
        )
    path = database_url.partition(":///")[2].partition("?")[0]
    if not path or Path(path).absolute() != own.absolute():
        raise BackupError(
            f"the database {database_url} is not the data directory's {own}; backups copy "
            "only that one"
        )
    return own


def _snapshot(db: Path, target: Path) -> str | None:
    """Copy ``db`` into ``target`` with SQLite's online backup API; returns its Alembic revision."""
    src = sqlite3.connect(db, timeout=_BUSY_TIMEOUT_S)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            return _check_database(dst, "the snapshot")
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise BackupError(f"copying the database {db} failed: {e}") from e
    finally:
        src.close()


def _check_database(conn: sqlite3.Connection, what: str) -> str | None:
    result = conn.execute("PRAGMA integrity_check").fetchall()  # raises on a non-database
    if result != [("ok",)]:
        raise BackupError(f"{what} fails SQLite's integrity check: {result[:5]}")
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def _files(server_dir: Path) -> Iterator[tuple[Path, str]]:
    """(path, archive name) of every directory and regular file to copy, parents first."""
    for root, dirs, names in os.walk(server_dir):
        dirs.sort()
        here = Path(root)
        rel = here.relative_to(server_dir)
        if rel != Path("."):
            yield here, f"server/{rel.as_posix()}"
        for name in sorted(names):
            if rel == Path(".") and name in _DB_FILES:
                continue
            path = here / name
            if stat.S_ISREG(path.lstat().st_mode):  # no sockets, links or devices
                yield path, f"server/{(rel / name).as_posix()}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def backup(
    data_dir: Path, out: Path, passphrase: str, *, database_url: str | None = None
) -> BackupSummary:
    """Write a sealed backup of ``data_dir``'s server state to ``out`` (which must not exist)."""
    db = database_path(data_dir, database_url)
    server_dir = _server_dir(data_dir)
    if not db.is_file():
        raise BackupError(f"{data_dir} is not a Cellplane data directory: {db} does not exist")
    if out.exists():
        raise BackupError(f"{out} already exists: choose another name or remove it first")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} is not a directory")
    if out.resolve().is_relative_to(server_dir.resolve()):
        raise BackupError(f"{out} is inside the directory being backed up ({server_dir})")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        snapshot = staging / DB_NAME
        revision = _snapshot(db, snapshot)
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        files = list(_files(server_dir))  # after the snapshot: a superset of what it names
        count = sum(1 for p, _ in files if p.is_file()) + 1
        manifest = {
            "format": FORMAT,
            "created_at": created,
            "db_revision": revision,
            "source": str(data_dir),
            "files": count,
        }
        partial = staging / "sealed"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, SealedWriter(raw, passphrase) as sealed:
            # A stream-mode ("w|") tarfile only writes: no seek or tell on the sealed stream.
            stream = cast("IO[bytes]", sealed)
            with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
                tar.add(snapshot, f"server/{DB_NAME}", recursive=False)
                for path, name in files:
                    with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                        tar.add(path, name, recursive=False)
            sealed.close()
            raw.flush()
            os.fsync(raw.fileno())
        size = partial.stat().st_size
        os.link(partial, out)  # fails if `out` appeared meanwhile: never overwrite
    except OSError as e:
        raise BackupError(f"writing {out} failed: {e.strerror or e}") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BackupSummary(out, count, size, revision, created)


# --- restore ---


def _member_path(member: tarfile.TarInfo) -> PurePosixPath:
    path = PurePosixPath(member.name)
    if (
        path.is_absolute()
        or ".." in path.parts
        or not path.parts
        or (path.parts[0] != "server" and member.name != MANIFEST)
        or any(c in member.name for c in "\x00\\")
    ):
        raise BackupError(f"the backup holds an unexpected path {member.name!r}; refused")
    if not (member.isfile() or member.isdir()):
        raise BackupError(f"the backup holds {member.name!r}, which is not a file; refused")
    return path


def _unpack(sealed: SealedReader, staging: Path) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    # A stream-mode ("r|") tarfile only reads: no seek or tell on the sealed stream.
    with tarfile.open(fileobj=cast("IO[bytes]", sealed), mode="r|") as tar:
        for member in tar:
            rel = _member_path(member)
            target = staging.joinpath(*rel.parts)
            if member.isdir():
                target.mkdir(mode=0o700, parents=True, exist_ok=True)
                target.chmod(member.mode & 0o755)
                continue
            src = tar.extractfile(member)
            if src is None:
                raise BackupError(f"the backup's {member.name!r} cannot be read")
            if member.name == MANIFEST:
                try:
                    manifest = json.loads(src.read())
                except ValueError as e:
                    raise BackupError("the backup's manifest is not JSON") from e
                continue
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, member.mode & 0o644)
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(src, f)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BackupError(f"the backup's format is {found!r}; this version restores {FORMAT}")
    return manifest


def _occupied(server_dir: Path) -> bool:
    return server_dir.exists() and (not server_dir.is_dir() or any(server_dir.iterdir()))


def restore(
    source: Path, data_dir: Path, passphrase: str, *, force: bool = False
) -> tuple[BackupSummary, Path | None]:
    """Restore ``source`` into ``data_dir``; returns the summary and where an existing
    ``server/`` was moved (with ``force``), or None."""
    server_dir = _server_dir(data_dir)
    if _occupied(server_dir) and not force:
        raise BackupError(
            f"{server_dir} is not empty: restore replaces a deployment's state only with "
            "--force (stop its server first; the current folder is kept aside)"
        )
    try:
        src = source.open("rb")
    except OSError as e:
        raise BackupError(f"cannot read {source}: {e.strerror or e}") from e
    with src:
        try:
            sealed = SealedReader(src, passphrase)  # the passphrase, before anything is written
        except SealError as e:
            raise BackupError(f"{source}: {e}") from e
        created_dir = not data_dir.exists()
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
        try:
            summary, moved = _install(source, sealed, staging, data_dir)
        except BaseException:
            if created_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return summary, moved


def _install(
    source: Path, sealed: SealedReader, staging: Path, data_dir: Path
) -> tuple[BackupSummary, Path | None]:
    server_dir = _server_dir(data_dir)
    try:
        try:
            manifest = _unpack(sealed, staging)
        except SealError as e:
            raise BackupError(f"{source}: {e}") from e
        except tarfile.TarError as e:
            raise BackupError(f"{source}: the backup's contents are not readable: {e}") from e
        db = staging / "server" / DB_NAME
        if not db.is_file():
            raise BackupError(f"{source} holds no database (server/{DB_NAME})")
        try:
            conn = sqlite3.connect(db)
            try:
                revision = _check_database(conn, "the restored database")
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise BackupError(f"{source}: its database cannot be read: {e}") from e
        moved: Path | None = None
        if server_dir.exists() or server_dir.is_symlink():
            if _occupied(server_dir):
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
                moved = data_dir / f"server.replaced-{stamp}"
                server_dir.rename(moved)
            else:
                server_dir.rmdir()
        (staging / "server").rename(server_dir)
        server_dir.chmod(0o700)
    except OSError as e:
        raise BackupError(f"restoring into {data_dir} failed: {e.strerror or e}") from e
    files = sum(1 for p in server_dir.rglob("*") if p.is_file())
    summary = BackupSummary(
        source, files, source.stat().st_size, revision, str(manifest.get("created_at", ""))
    )
    return summary, moved
