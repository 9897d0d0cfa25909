"""a host's physical cores and CPU overcommit ratio; the project of a task (`task ls`)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cpu_cores", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cpu_ratio", sa.Float(), nullable=True))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f("ix_tasks_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_project_id"))
        batch_op.drop_column("project_id")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("cpu_ratio")
        batch_op.drop_column("cpu_cores")
