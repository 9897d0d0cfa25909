"""host engine health (state, since, last failure, restarts) and cells that ended

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("engine_state", sa.String(length=16), nullable=False, server_default="UP")
        )
        batch_op.add_column(sa.Column("engine_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("engine_message", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("engine_outages", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("ended_at")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("engine_outages")
        batch_op.drop_column("engine_message")
        batch_op.drop_column("engine_since")
        batch_op.drop_column("engine_state")
