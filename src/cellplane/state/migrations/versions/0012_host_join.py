"""Join tokens (one-use or expiring) and host certificates: revocation and pinning

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 22:00:00

`join_tokens`: tokens an operator creates for agents to join with (`cellplane host token
create`): only their SHA-256 is kept, with an optional expiry and an optional number of uses
left. Hosts gain `revoked_at` (`cellplane host revoke`: its certificates are revoked and it is
refused until it joins again with a join token) and `cert_sha256`, the fingerprint of the host
certificate the server pins when it connects to the agent's own endpoint.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "join_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("uses_left", sa.Integer(), nullable=True),
        sa.Column("used", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cert_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_column("cert_sha256")
        batch_op.drop_column("revoked_at")
    op.drop_table("join_tokens")
