"""Isolation classes: what a host's engine can run, what a cell runs with, tenant/project policy

Revision ID: 0015
Revises: 0011
Create Date: 2026-12-03 21:40:00

Hosts gain `isolation` (the classes their agent found it can run; every existing host runs
`standard` only until its agent reports again) and `isolation_detail`. Cells gain `isolation`
(`standard` for every existing cell). Tenants and projects gain `min_isolation`, the weakest
class their cells may use (NULL: no policy).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("isolation", sa.JSON(), nullable=False, server_default='["standard"]')
        )
        batch_op.add_column(sa.Column("isolation_detail", sa.Text(), nullable=True))
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("isolation", sa.String(length=16), nullable=False, server_default="standard")
        )
    for table in ("tenants", "projects"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("min_isolation", sa.String(length=16), nullable=True))


def downgrade() -> None:
    for table in ("projects", "tenants"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("min_isolation")
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("isolation")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("isolation_detail")
        batch_op.drop_column("isolation")
