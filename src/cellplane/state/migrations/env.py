"""Alembic environment: runs migrations against the URL `cellplane.state.db.migrate` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import cellplane.state.cluster_models  # registers the cluster tables
import cellplane.state.identity_models
import cellplane.state.service_models  # noqa: F401  (registers the services table)
from cellplane.state.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=url.startswith("sqlite"),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
