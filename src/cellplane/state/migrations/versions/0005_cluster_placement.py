"""cluster placement (node hosts and policy notes) and pinned cells

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("placement", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pinned_host_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("pinned_host_id")
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.drop_column("placement")
