"""Upgrades: a database of the previous release's schema (tests/fixtures/upgrade-0011.sqlite,
made by tests/fixtures/build_upgrade_db.py with data in every table) migrates forward with its
data intact and usable; a server refuses a database made by a newer release, changing nothing."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cellplane.api.app import create_app
from cellplane.sealing import Sealer, is_sealed
from cellplane.services.context import Services
from cellplane.state.db import Database, DatabaseNewerThanServer, migrate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FIXTURE = FIXTURES / "upgrade-0011.sqlite"
SRC = Path(__file__).resolve().parents[3] / "src"

#: Columns a migration seals on purpose (0016): checked by opening them with the data dir's key.
REWRITTEN = {("ldap_configs", "bind_secret"), ("hosts", "agent_secret")}


def _rows(db_file: Path) -> dict[str, list[dict[str, Any]]]:
    con = sqlite3.connect(db_file)
    con.row_factory = sqlite3.Row
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name != 'alembic_version'"
            )
        ]
        return {
            t: [dict(r) for r in con.execute(f'SELECT * FROM "{t}" ORDER BY rowid')] for t in tables
        }
    finally:
        con.close()


def _revision(db_file: Path) -> str:
    con = sqlite3.connect(db_file)
    try:
        return str(con.execute("SELECT version_num FROM alembic_version").fetchone()[0])
    finally:
        con.close()


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from cellplane.state import db

    cfg = Config()
    cfg.set_main_option("script_location", str(db._MIGRATIONS))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    server = tmp_path / "server"
    server.mkdir(mode=0o700)
    shutil.copyfile(FIXTURE, server / "cellplane.db")
    return tmp_path


def test_the_fixture_is_the_previous_release_with_data_in_every_table() -> None:
    assert _revision(FIXTURE) == "0011"
    rows = _rows(FIXTURE)
    assert len(rows) == 29  # every table of the 0011 schema
    assert not [t for t, r in rows.items() if not r]


def test_a_previous_release_database_migrates_forward_with_its_data_intact(data_dir: Path) -> None:
    db_file = data_dir / "server" / "cellplane.db"
    before = _rows(db_file)
    migrate(f"sqlite:///{db_file}", key_dir=data_dir / "server")
    assert _revision(db_file) == _head() != "0011"
    after = _rows(db_file)
    sealer = Sealer(data_dir / "server")
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            kept = {c: new[c] for c in old if (table, c) not in REWRITTEN}
            assert kept == {c: v for c, v in old.items() if (table, c) not in REWRITTEN}, table
            for column in [c for t, c in REWRITTEN if t == table]:
                assert old[column] and not is_sealed(old[column])  # the fixture's plain form
                assert is_sealed(new[column]) and old[column] not in new[column]
                assert sealer.open(new[column], f"{table}.{column}") == old[column]
    assert not any(r["read_only"] for r in after["cells"])  # 0016's new column: off
    migrate(f"sqlite:///{db_file}", key_dir=data_dir / "server")  # a second start: no change
    assert _rows(db_file) == after


def test_sealing_the_old_secrets_needs_the_key_directory(data_dir: Path) -> None:
    db_file = data_dir / "server" / "cellplane.db"
    with pytest.raises(RuntimeError, match="key"):
        migrate(f"sqlite:///{db_file}")
    assert not (data_dir / "server" / "secrets.key").exists()


def test_the_upgraded_data_serves_a_login_and_the_users_cells(data_dir: Path) -> None:
    """Bob (a project member of `web`, made under 0011) logs in with his password and sees the
    project's cells (one of them a cluster node)."""
    db_file = data_dir / "server" / "cellplane.db"
    migrate(f"sqlite:///{db_file}", key_dir=data_dir / "server")
    svc = Services(db=Database(f"sqlite:///{db_file}"), data_dir=data_dir / "server")
    try:
        with TestClient(create_app(svc, run_controllers=False), base_url="http://127.0.0.1") as c:
            doc = c.get("/identity/default/.well-known/openid-configuration").json()
            answer = c.post(
                doc["token_endpoint"].removeprefix("http://127.0.0.1"),
                data={
                    "grant_type": "password",
                    "username": "bob",
                    "password": "Battery-Staple-2",
                    "client_id": "cellplane-cli",
                },
            )
            assert answer.status_code == 200, answer.text
            bob = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            cells = c.get("/v1/projects/web/cells", headers=bob)
            assert cells.status_code == 200, cells.text
            assert sorted(x["name"] for x in cells.json()["items"]) == ["api", "cache-primary-0"]
            assert c.get("/v1/projects/web/volumes", headers=bob).json()["items"][0]["name"] == (
                "data"
            )
    finally:
        svc.db.dispose()


def _newer(data_dir: Path) -> Path:
    db_file = data_dir / "server" / "cellplane.db"
    con = sqlite3.connect(db_file)
    con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    con.commit()
    con.close()
    return db_file


def test_migrate_refuses_a_database_newer_than_itself_and_changes_nothing(data_dir: Path) -> None:
    db_file = _newer(data_dir)
    before = db_file.read_bytes()
    with pytest.raises(DatabaseNewerThanServer) as info:
        migrate(f"sqlite:///{db_file}")
    assert info.value.found == "9999_from_the_future"
    assert info.value.head == _head()
    assert db_file.read_bytes() == before


def test_the_server_refuses_to_start_on_a_newer_database(data_dir: Path) -> None:
    db_file = _newer(data_dir)
    before = db_file.read_bytes()
    command = ["server", "--data-dir", str(data_dir), "--port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "cellplane.daemon", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "CELLPLANE_LOG_LEVEL": "warning"},
        check=False,
    )
    assert done.returncode == DatabaseNewerThanServer.EXIT_CODE == 3, done.stderr
    assert "'9999_from_the_future'" in done.stderr
    assert "newer release" in done.stderr and f"{_head()!r}" in done.stderr
    assert "Traceback" not in done.stderr
    assert db_file.read_bytes() == before
