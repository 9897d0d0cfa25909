"""A cell on several networks of its project

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 10:30:00

`cell_networks`: one row per network a cell joins, with its address there (the control plane's)
its position (0: the first network, which `cells.network_id` / `network_address` keep naming)
and the address its engine reports there. Back-filled from those columns, so every existing cell
has its one row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cell_networks",
        sa.Column("cell_id", sa.String(length=40), nullable=False),
        sa.Column("network_id", sa.String(length=40), nullable=False),
        sa.Column("address", sa.String(length=45), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("engine_address", sa.String(length=45), nullable=True),
        sa.ForeignKeyConstraint(["cell_id"], ["cells.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["network_id"], ["networks.id"]),
        sa.PrimaryKeyConstraint("cell_id", "network_id"),
        sa.UniqueConstraint("network_id", "address", name="uq_cell_networks_address"),
        sa.UniqueConstraint("cell_id", "position", name="uq_cell_networks_position"),
    )
    op.create_index("ix_cell_networks_network_id", "cell_networks", ["network_id"])
    op.execute(
        "INSERT INTO cell_networks (cell_id, network_id, address, position) "
        "SELECT id, network_id, network_address, 0 FROM cells WHERE network_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_cell_networks_network_id", table_name="cell_networks")
    op.drop_table("cell_networks")
