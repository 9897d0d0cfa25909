"""Alembic migrations on PostgreSQL: upgrade to head twice is a no-op the second time."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

import cellplane.state.cluster_models  # noqa: F401  (registers the cluster tables)
from cellplane.state.db import Database, migrate
from cellplane.state.models import Base

from .conftest import PostgresServer


def _snapshot(url: str) -> tuple[set[str], list[str], dict[str, list[str]]]:
    engine = create_engine(url)
    try:
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        columns = {t: sorted(c["name"] for c in insp.get_columns(t)) for t in tables}
        with engine.connect() as conn:
            versions = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()
    return tables, versions, columns


@pytest.mark.integration
def test_migrate_twice_is_idempotent(pg: PostgresServer) -> None:
    url = pg.create_database("migrate")
    migrate(url)
    tables, versions, columns = _snapshot(url)

    expected = set(Base.metadata.tables)
    assert expected, "no models registered"
    assert expected <= tables, sorted(expected - tables)
    assert "alembic_version" in tables
    assert len(versions) == 1, versions
    for name, table in Base.metadata.tables.items():
        assert set(columns[name]) >= {c.name for c in table.columns}, name

    migrate(url)  # second run: nothing to do, nothing changes
    assert _snapshot(url) == (tables, versions, columns)

    # The server's own engine (pool options for PostgreSQL) works against the schema.
    db = Database(url)
    try:
        assert not db.is_sqlite
        with db.reader() as s:
            assert s.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        db.dispose()
