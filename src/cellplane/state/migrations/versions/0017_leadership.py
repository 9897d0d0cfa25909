"""Server replicas: the controllers' leader and its epoch

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 10:00:00

One row (id 1): the replica that runs the controllers (`holder`), since when, and the
leadership `epoch`, bumped by every replica that takes over. Every transaction a controller
commits re-reads the epoch first (`cellplane.state.leadership`), so a leader that lost its
lock cannot commit after another replica took over.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "leadership",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(table, [{"id": 1, "epoch": 0, "holder": None, "since": None}])


def downgrade() -> None:
    op.drop_table("leadership")
