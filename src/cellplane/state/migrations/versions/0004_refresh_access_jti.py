"""refresh tokens remember the access token issued with them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_jti", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("access_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("access_expires_at")
        batch_op.drop_column("access_jti")
