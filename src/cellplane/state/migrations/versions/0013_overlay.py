"""the overlay: a VXLAN id per network, a control-plane address per cell on its network

Revision ID: 0013
Revises: 0012 (0011 on its own; 0012 came with the merge of branch hosts)
Create Date: 2026-12-03 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# VNIs of existing networks: the same rule as state.networks (the lowest free from VNI_BASE).
_VNI_BASE = 4096


def upgrade() -> None:
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vni", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint("uq_networks_vni", ["vni"])
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_address", sa.String(length=45), nullable=True))
        batch_op.create_index(
            "ix_cells_network_address", ["network_id", "network_address"], unique=True
        )
    bind = op.get_bind()
    ids = [r[0] for r in bind.execute(sa.text("SELECT id FROM networks ORDER BY created_at, id"))]
    for i, net_id in enumerate(ids):
        bind.execute(
            sa.text("UPDATE networks SET vni = :v WHERE id = :i"), {"v": _VNI_BASE + i, "i": net_id}
        )


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_index("ix_cells_network_address")
        batch_op.drop_column("network_address")
    with op.batch_alter_table("networks", schema=None) as batch_op:
        batch_op.drop_constraint("uq_networks_vni", type_="unique")
        batch_op.drop_column("vni")
