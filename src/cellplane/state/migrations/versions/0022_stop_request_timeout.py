"""A stop request's own grace period

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 23:30:00

`cells.stop_request_timeout`: the timeout a stop, restart or delete request named (`docker stop
-t 0`, `docker rm -f`, `POST /v1/cells/{id}/stop {"timeout": 0}`), for that request only. Such a
request used to overwrite the cell's own `stop_timeout`, so every later stop of the cell used it
too. Existing cells get NULL (their own timeout applies).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stop_request_timeout", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("stop_request_timeout")
