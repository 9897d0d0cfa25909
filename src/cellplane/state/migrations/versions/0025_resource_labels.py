"""Labels on networks and volumes, the name a Docker client gave them; audit events by action

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 10:00:00

A network or volume carries its user's labels (JSON, `{}` for the rows made before), as cells
do; `docker_name` is the name a Docker client asked for when that is not a DNS label (Compose's
`proj_front` for the Cellplane name `proj-front`), NULL otherwise. Both used to be kept in the
server process's memory only, so a restart (or another replica) lost them.

The audit log gets an index on (action, at): a Docker endpoint's events read the deletions of
networks, volumes and cells (`network.delete`, `volume.delete`, `cell.delete`) from it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

_TABLES = ("networks", "volumes")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="{}"))
            batch_op.add_column(sa.Column("docker_name", sa.String(length=255), nullable=True))
    op.create_index("ix_audit_events_action_at", "audit_events", ["action", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_action_at", table_name="audit_events")
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("docker_name")
            batch_op.drop_column("labels")
