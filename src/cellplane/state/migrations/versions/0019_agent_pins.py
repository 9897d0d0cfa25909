"""Agent endpoint pins: the host certificate the server trusts on a host's agent endpoint

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 10:40:00

`hosts.cert_pem`: the certificate the CA issued to the host at its last registration. The server
connects to the agent's endpoint over mutual TLS and trusts exactly this leaf
(`services.agent_tls`); a host registered without a certificate (plain HTTP) has none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("cert_pem", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("cert_pem")
