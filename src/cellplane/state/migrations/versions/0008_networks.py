"""networks as a resource: a networks table, each project's default network, cells joined to it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00

Existing projects get their default network under the engine-side name they already use
(`cp-<project id>`), so running deployments are adopted unchanged; subnets are allocated in the
order of the projects' creation (then id), one /24 each from 10.128.0.0/9, as `state.networks`
allocates them from now on. Existing cells join their project's default network. A project's
networks go with it (ON DELETE CASCADE: deleting a tenant deletes its projects in bulk).
"""

from __future__ import annotations

import ipaddress

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_POOL = ipaddress.ip_network("10.128.0.0/9")


def _subnet(n: int) -> str:
    base = int(_POOL.network_address) + n * 256
    return f"{ipaddress.ip_address(base)}/24"


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("subnet", sa.String(length=43), nullable=False),
        sa.Column("driver", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name"),
        sa.UniqueConstraint("subnet"),
    )
    op.create_index("ix_networks_project_id", "networks", ["project_id"])
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_id", sa.String(length=40), nullable=True))
        batch_op.create_index("ix_cells_network_id", ["network_id"])
        batch_op.create_foreign_key("fk_cells_network_id", "networks", ["network_id"], ["id"])

    conn = op.get_bind()
    projects = sa.table(
        "projects", sa.column("id", sa.String), sa.column("created_at", sa.DateTime)
    )
    networks = sa.table(
        "networks",
        sa.column("id", sa.String),
        sa.column("project_id", sa.String),
        sa.column("name", sa.String),
        sa.column("subnet", sa.String),
        sa.column("driver", sa.String),
        sa.column("created_at", sa.DateTime),
    )
    cells = sa.table(
        "cells", sa.column("project_id", sa.String), sa.column("network_id", sa.String)
    )
    rows = conn.execute(
        sa.select(projects.c.id, projects.c.created_at).order_by(
            projects.c.created_at, projects.c.id
        )
    ).all()
    for n, r in enumerate(rows):
        net_id = "net-" + r.id.removeprefix("prj-")
        conn.execute(
            networks.insert().values(
                id=net_id,
                project_id=r.id,
                name=f"cp-{r.id}",
                subnet=_subnet(n),
                driver="bridge",
                created_at=r.created_at,
            )
        )
        conn.execute(cells.update().where(cells.c.project_id == r.id).values(network_id=net_id))


def downgrade() -> None:
    with op.batch_alter_table("cells", schema=None) as batch_op:
        batch_op.drop_constraint("fk_cells_network_id", type_="foreignkey")
        batch_op.drop_index("ix_cells_network_id")
        batch_op.drop_column("network_id")
    op.drop_index("ix_networks_project_id", table_name="networks")
    op.drop_table("networks")
