"""Cells' health checks: the check (`healthcheck`) and its last reported outcome (`health`)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 03:10:00

A cell may carry a command its host's agent runs in the running container at an interval
(Docker's HEALTHCHECK); the agent reports the outcome when it changes. Both are JSON, NULL for
a cell without a check.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("healthcheck", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("health", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("health")
        batch_op.drop_column("healthcheck")
