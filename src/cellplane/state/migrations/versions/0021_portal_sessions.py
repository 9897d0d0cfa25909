"""Portal sessions in the database

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 17:00:00

`portal_sessions`: the portal's server-side sessions, which lived in one process's memory, so
that a restart keeps everyone signed in and the server's replicas share them. One row per
session, keyed by the SHA-256 of the browser's session id; the tokens and the CSRF token are
sealed (`cellplane.sealing`). Nothing to back-fill: sessions of the old memory store ended with
their process.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("signed_in", sa.Boolean(), nullable=False),
        sa.Column("tenant", sa.String(length=63), nullable=False),
        sa.Column("user_name", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("refresh_claim", sa.Float(), nullable=True),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_portal_sessions_last_seen", "portal_sessions", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_portal_sessions_last_seen", table_name="portal_sessions")
    op.drop_table("portal_sessions")
