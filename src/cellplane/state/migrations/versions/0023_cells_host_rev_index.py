"""The agents' deltas: an index on cells (host_id, host_rev)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 17:30:00

An agent's long poll asks for its host's cells changed after the revision it has
(`cells.host_id = ? AND cells.host_rev > ?`). With an index on each column alone the database
reads every cell of the host and filters; the pair reads the changed ones only.
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.create_index("ix_cells_host_id_host_rev", ["host_id", "host_rev"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_index("ix_cells_host_id_host_rev")
