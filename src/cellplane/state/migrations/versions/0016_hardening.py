"""Hardening: stored secrets sealed at rest; a cell's read-only root and pids limit

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-03 22:00:00

The secrets the server must read back are sealed with the key in the data directory
(`cellplane.sealing`): the LDAP bind secret (`ldap_configs.bind_secret`) and each host agent's
secret (`hosts.agent_secret`, widened to TEXT for the sealed form). Rows written before are
sealed here; the key directory comes from `cellplane.state.db.migrate(url, key_dir=...)` (the
server's data directory), and a database holding such secrets cannot be upgraded without it.
Values already sealed are left alone, so the step can be run again.

Cells gain `read_only` (an opt-in read-only root file system; false for existing cells) and
`pids_limit` (NULL: the server's default limit).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_SEALED = (
    ("hosts", "id", "agent_secret"),
    ("ldap_configs", "tenant_id", "bind_secret"),
)


def _seal_rows() -> None:
    from cellplane.sealing import Sealer, is_sealed

    conn = op.get_bind()
    pending: list[tuple[str, str, str, str, str]] = []
    for table, key, column in _SEALED:
        rows = conn.execute(
            sa.text(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL")
        ).fetchall()
        pending.extend((table, key, column, r[0], r[1]) for r in rows if not is_sealed(r[1]))
    if not pending:
        return
    config = op.get_context().config
    key_dir = config.attributes.get("secrets_key_dir") if config is not None else None
    if key_dir is None:
        raise RuntimeError(
            "migration 0016 seals stored secrets with the key in the server's data directory: "
            "run it through `cellplane server`/`cellplane up` (cellplane.state.db.migrate with "
            "key_dir), not bare alembic"
        )
    sealer = Sealer(Path(key_dir))
    for table, key, column, row_id, value in pending:
        conn.execute(
            sa.text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"),
            {"v": sealer.seal(value, f"{table}.{column}"), "k": row_id},
        )


def upgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("pids_limit", sa.Integer(), nullable=True))
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.alter_column(
            "agent_secret", existing_type=sa.String(length=128), type_=sa.Text(), nullable=True
        )
    _seal_rows()


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.alter_column(
            "agent_secret", existing_type=sa.Text(), type_=sa.String(length=128), nullable=True
        )
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_column("pids_limit")
        batch_op.drop_column("read_only")
