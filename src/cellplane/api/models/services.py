"""Answer models of services (`/v1/projects/{p}/services`, `cellplane.services.cell_services`)."""

from __future__ import annotations

from pydantic import Field

from cellplane.api.models.base import OpenView, Time, View
from cellplane.api.models.resources import Task

__all__ = ["Service", "ServiceCell", "ServiceList", "ServiceUpdatePolicy"]


class ServiceCell(View):
    id: str
    name: str
    state: str
    desired_state: str
    revision: int = Field(description="The template revision the cell was created from.")
    host_id: str | None


class ServiceUpdatePolicy(View):
    max_unavailable: int
    max_surge: int


class Service(View):
    id: str
    name: str
    project: str
    state: str = Field(
        description="READY, PROGRESSING (scaling, rolling out, healing) or DELETING."
    )
    instances: int = Field(description="The desired number of cells.")
    ready: int = Field(description="Cells running now (of any revision).")
    current: int = Field(description="Live cells of the current template revision.")
    revision: int
    isolation: str = Field(
        description="The isolation class of its cells (`standard` or `sandbox`): the template's "
        "`isolation`, or the tenant's or project's minimum when the template names none."
    )
    template: OpenView = Field(description="The cell create body (without a name) of `revision`.")
    update: ServiceUpdatePolicy
    message: str | None = Field(description="Why the last pass could not do everything, or null.")
    task: Task | None
    cells: list[ServiceCell]
    created_at: Time
    updated_at: Time


class ServiceList(View):
    items: list[Service]
    next_cursor: str | None
