"""Backup and restore of a real data directory (migrated and seeded SQLite, CA, keys), and the
`cellplane admin backup|restore` commands."""

from __future__ import annotations

import io
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cellplane.backup.archive import BackupError, backup, restore
from cellplane.backup.sealed import SealedWriter
from cellplane.cli.main import app

PASS = "a long passphrase"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cellplane.daemon import ca_bundle, prepare

    d = tmp_path_factory.mktemp("prepared") / "data"
    prepare(d, None)
    ca_bundle(d)
    (d / "server" / "images").mkdir()
    (d / "server" / "images" / "busybox.tar").write_bytes(b"\x01" * 300_000)
    return d


@pytest.fixture
def data(prepared: Path, tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(prepared, d, symlinks=True)
    return d


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file but the database: content and mode."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("cellplane.db")
    }


def test_round_trip_restores_database_keys_and_files(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.cpbak"
    summary = backup(data, out, PASS)
    assert out.stat().st_mode & 0o777 == 0o600
    assert summary.db_revision and summary.files == len(files(data / "server")) + 1
    assert b"BEGIN" not in out.read_bytes()  # no PEM in clear

    target = tmp_path / "restored"
    result, moved = restore(out, target, PASS)
    assert moved is None
    assert files(target / "server") == files(data / "server")
    sql = "SELECT * FROM tenants ORDER BY id"
    assert rows(target / "server" / "cellplane.db", sql) == rows(
        data / "server" / "cellplane.db", sql
    )
    assert result.db_revision == summary.db_revision
    assert sorted(p.name for p in target.iterdir()) == ["server"]  # no staging left


def test_backup_is_consistent_beside_an_open_write_transaction(data: Path, tmp_path: Path) -> None:
    db = data / "server" / "cellplane.db"
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("CREATE TABLE probe (n INTEGER)")
        writer.execute("INSERT INTO probe VALUES (1)")
        writer.execute("BEGIN IMMEDIATE")  # a server mid-change holds the write lock
        writer.execute("INSERT INTO probe VALUES (2)")
        backup(data, tmp_path / "b.cpbak", PASS)
        writer.execute("COMMIT")
    finally:
        writer.close()
    restore(tmp_path / "b.cpbak", tmp_path / "r", PASS)
    assert rows(tmp_path / "r" / "server" / "cellplane.db", "SELECT n FROM probe") == [(1,)]


def test_restore_refuses_a_non_empty_server_dir_without_force(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.cpbak"
    backup(data, out, PASS)
    before = files(data / "server")
    with pytest.raises(BackupError, match=r"not empty.*--force"):
        restore(out, data, PASS)
    assert files(data / "server") == before
    (data / "server" / "join-token").write_text("changed since\n")
    _, moved = restore(out, data, PASS, force=True)
    assert moved is not None and (moved / "join-token").read_text() == "changed since\n"
    assert files(data / "server") == before


def test_an_empty_server_dir_is_restored_into(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.cpbak"
    backup(data, out, PASS)
    target = tmp_path / "t"
    (target / "server").mkdir(parents=True)
    restore(out, target, PASS)
    assert (target / "server" / "cellplane.db").is_file()


def test_a_wrong_passphrase_changes_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.cpbak"
    backup(data, out, PASS)
    with pytest.raises(BackupError, match="passphrase is wrong"):
        restore(out, tmp_path / "new", "another passphrase")
    assert not (tmp_path / "new").exists()


def test_an_altered_backup_changes_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.cpbak"
    backup(data, out, PASS)
    blob = bytearray(out.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    out.write_bytes(bytes(blob))
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(BackupError, match="altered"):
        restore(out, target, PASS)
    assert list(target.iterdir()) == []


def _sealed_tar(path: Path, members: dict[str, bytes]) -> None:
    with path.open("wb") as raw, SealedWriter(raw, PASS) as sealed:
        with tarfile.open(fileobj=sealed, mode="w|") as tar:
            for name, content in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        sealed.close()


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "server/../../x", "elsewhere/file"])
def test_a_backup_with_paths_outside_server_is_refused(tmp_path: Path, name: str) -> None:
    bad = tmp_path / "bad.cpbak"
    _sealed_tar(bad, {"manifest.json": b'{"format": "cellplane-backup/1"}', name: b"x"})
    target = tmp_path / "t"
    with pytest.raises(BackupError, match="unexpected path"):
        restore(bad, target, PASS)
    assert not target.exists() and not (tmp_path / "escape").exists()


def test_a_backup_without_a_database_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cpbak"
    _sealed_tar(bad, {"manifest.json": b'{"format": "cellplane-backup/1"}', "server/a": b"x"})
    with pytest.raises(BackupError, match="no database"):
        restore(bad, tmp_path / "t", PASS)


def test_a_backup_whose_database_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cpbak"
    members = {"manifest.json": b'{"format": "cellplane-backup/1"}'}
    members["server/cellplane.db"] = b"not a database" * 100
    _sealed_tar(bad, members)
    with pytest.raises(BackupError, match=r"cannot be read|integrity"):
        restore(bad, tmp_path / "t", PASS)
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://cp@localhost/cp", "postgresql.*pg_dump"),
        ("sqlite:////var/lib/elsewhere.db", "not the data directory's"),
    ],
)
def test_backup_refuses_a_database_it_does_not_copy(
    data: Path, tmp_path: Path, url: str, message: str
) -> None:
    with pytest.raises(BackupError, match=message):
        backup(data, tmp_path / "b.cpbak", PASS, database_url=url)
    assert not (tmp_path / "b.cpbak").exists()


def test_backup_refuses_bad_places(data: Path, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="not a Cellplane data directory"):
        backup(tmp_path / "nothing", tmp_path / "b.cpbak", PASS)
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(BackupError, match="already exists"):
        backup(data, tmp_path / "taken", PASS)
    assert (tmp_path / "taken").read_text() == "mine"
    with pytest.raises(BackupError, match="inside the directory"):
        backup(data, data / "server" / "b.cpbak", PASS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "taken"]  # no temp files


# --- the commands ---


def test_cli_backup_and_restore(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    secret = tmp_path / "pass"
    secret.write_text(PASS + "\n")
    out = tmp_path / "b.cpbak"
    monkeypatch.delenv("CELLPLANE_BACKUP_PASSPHRASE", raising=False)
    backup_args = ["admin", "backup", "--data-dir", str(data), "--out", str(out)]
    r = runner.invoke(app, [*backup_args, "--passphrase-file", str(secret)])
    assert r.exit_code == 0, r.output
    assert "Backed up" in r.output and out.is_file()

    monkeypatch.setenv("CELLPLANE_BACKUP_PASSPHRASE", "wrong passphrase")
    restore_args = ["admin", "restore", "--data-dir", str(tmp_path / "r"), "--from", str(out)]
    r = runner.invoke(app, restore_args)
    assert r.exit_code == 1 and "passphrase is wrong" in r.output
    monkeypatch.setenv("CELLPLANE_BACKUP_PASSPHRASE", PASS)
    r = runner.invoke(app, ["admin", "restore", "--data-dir", str(data), "--from", str(out)])
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(
        app, ["admin", "restore", "--data-dir", str(data), "--from", str(out), "--force"]
    )
    assert r.exit_code == 0, r.output
    assert "previous server state was moved" in r.output


def test_cli_refuses_a_short_or_missing_passphrase(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.setenv("CELLPLANE_BACKUP_PASSPHRASE", "short")
    args = ["admin", "backup", "--data-dir", str(data), "--out", str(tmp_path / "b.cpbak")]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "shorter than 8" in r.output
    monkeypatch.delenv("CELLPLANE_BACKUP_PASSPHRASE")
    r = runner.invoke(app, args)  # CliRunner's stdin is no terminal
    assert r.exit_code == 2 and "passphrase is needed" in r.output
    assert not (tmp_path / "b.cpbak").exists()
