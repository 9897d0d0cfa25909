"""cluster health: cluster events, and each node's cell restart count when it was found ready

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 19:00:00

`cluster_events` records what happened to a cluster outside its operations (a node lost, healed,
or a heal that failed); they go with the cluster (ON DELETE CASCADE). `ready_restarts` is the
node cell's restart count when the node was last found SERVICE_READY: a higher count means its
container was restarted or recreated since (killed or removed outside Cellplane), and the node
is probed again. Existing nodes start with NULL (unknown: only the cell's state is checked until
the node is next found ready).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cluster_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cluster_events_cluster_id"), ["cluster_id"], unique=False
        )
    with op.batch_alter_table("cluster_nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ready_restarts", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cluster_nodes", schema=None) as batch_op:
        batch_op.drop_column("ready_restarts")
    with op.batch_alter_table("cluster_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cluster_events_cluster_id"))
    op.drop_table("cluster_events")
