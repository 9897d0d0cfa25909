"""scheduling policy and cell (anti-)affinity, assignment generations, host fencing

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-03 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("placement", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("affinity", sa.JSON(), nullable=True))
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("fence_revision", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("fenced_revision", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("departed_revision", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("departed_revision")
        batch_op.drop_column("fenced_revision")
        batch_op.drop_column("fence_revision")
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("generation")
        batch_op.drop_column("affinity")
        batch_op.drop_column("placement")
