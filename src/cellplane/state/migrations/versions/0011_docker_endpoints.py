"""Docker-compatible endpoints per project; a cell's entrypoint, working dir, user and hostname

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 19:00:00

`docker_endpoints`: one Docker Engine API listener per project (its TLS port), served by the
server process; it goes with its project (ON DELETE CASCADE). Cells gain the container fields
the Docker API sets and `inspect` reports back: entrypoint, working directory, user, hostname
(all optional; NULL keeps the image's own, as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "docker_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id"),
        sa.UniqueConstraint("port"),
    )
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entrypoint", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("workdir", sa.String(length=4096), nullable=True))
        batch_op.add_column(sa.Column("user", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("hostname", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("hostname")
        batch_op.drop_column("user")
        batch_op.drop_column("workdir")
        batch_op.drop_column("entrypoint")
    op.drop_table("docker_endpoints")
