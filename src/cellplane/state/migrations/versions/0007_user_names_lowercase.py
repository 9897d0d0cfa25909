"""user names are case-insensitive: existing names in lower case

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:45:00

From this revision the API keeps and compares user names in lower case (`Admin` is `admin`).
A name is lowered unless another user of the same tenant already holds the lowered form; such
a user (made before names were case-insensitive) keeps its name and can still be managed by id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    users = sa.table(
        "users", sa.column("id", sa.String), sa.column("tenant_id", sa.String), sa.column("name")
    )
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.tenant_id, users.c.name)).all()
    taken = {(r.tenant_id, r.name) for r in rows}
    for r in rows:
        lowered = r.name.lower()
        if lowered != r.name and (r.tenant_id, lowered) not in taken:
            conn.execute(users.update().where(users.c.id == r.id).values(name=lowered))
            taken.discard((r.tenant_id, r.name))
            taken.add((r.tenant_id, lowered))


def downgrade() -> None:
    pass  # lower-case names are valid names before this revision too
