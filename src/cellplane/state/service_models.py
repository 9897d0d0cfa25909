"""SQLAlchemy model of services: N identical cells from one template (`services.cell_services`).

A service's cells are ordinary rows of `cells`, named ``<service>-<ordinal>`` and labelled with
the service's id (`SERVICE_LABEL`) and the template revision they were made from
(`REVISION_LABEL`). Imported by the Alembic environment so that migrations see the table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cellplane.state.models import Base, UTCDateTime

__all__ = ["REVISION_LABEL", "SERVICE_LABEL", "SERVICE_NAME_LABEL", "Service"]

#: The label on a service's cell: the id of the service that owns it.
SERVICE_LABEL = "cellplane.service"
#: The template revision a service's cell was created from.
REVISION_LABEL = "cellplane.service.revision"
#: The service's name, for people and `cell ls --label service=web`.
SERVICE_NAME_LABEL = "service"


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    # The cell create body minus its name, as validated (`ServiceTemplate`), of `revision`.
    template: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    instances: Mapped[int] = mapped_column(Integer)
    max_unavailable: Mapped[int] = mapped_column(Integer)
    max_surge: Mapped[int] = mapped_column(Integer)
    # The ordinal the next new cell is named with (ordinals are never reused).
    next_ordinal: Mapped[int] = mapped_column(Integer, default=1)
    # ACTIVE | DELETING (the reconcile pass removes its cells, then the row).
    state: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    # The task of the last change (create, scale, update, delete); the reconcile pass advances it.
    task_id: Mapped[str | None] = mapped_column(String(40))
    # Why the last pass could not do everything (quota, capacity), or None.
    message: Mapped[str | None] = mapped_column(Text)
    # Cell failures replaced in a row (reset once the service is whole) and the last one's time.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
