"""Request bodies of services (`/v1/projects/{p}/services`), validated by pydantic at the API edge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cellplane.services.schemas import CellCreate
from cellplane.validation import DNS_LABEL_MSG, is_dns_label

__all__ = [
    "MAX_INSTANCES",
    "MAX_SERVICE_NAME",
    "ServiceCreate",
    "ServiceScale",
    "ServiceTemplate",
    "ServiceUpdate",
    "UpdatePolicy",
]

#: A service's cells are named `<service>-<ordinal>` and a cell name is a DNS label (63): the
#: service's name leaves room for a six-digit ordinal.
MAX_SERVICE_NAME = 56
MAX_INSTANCES = 1000


class ServiceTemplate(CellCreate):
    """A cell create body without its name: the service names its cells `<service>-<n>`."""

    name: str | None = Field(  # type: ignore[assignment]
        default=None, description="Not allowed: the service names its cells `<service>-<n>`."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:  # type: ignore[override]
        # Replaces CellCreate's check of the name (same method name): null is "not given".
        if v is not None:
            raise ValueError("a template has no name: the service names its cells <service>-<n>")
        return v


class UpdatePolicy(BaseModel):
    """Rolling-update bounds: at most `max_unavailable` cells below `instances` running, and at
    most `max_surge` cells above `instances` alive, at any moment of a rollout."""

    model_config = ConfigDict(extra="forbid")
    max_unavailable: int = Field(default=1, ge=0, le=MAX_INSTANCES)
    max_surge: int = Field(default=1, ge=0, le=MAX_INSTANCES)

    @model_validator(mode="after")
    def _moves(self) -> UpdatePolicy:
        if self.max_unavailable == 0 and self.max_surge == 0:
            raise ValueError("max_unavailable and max_surge cannot both be 0: nothing could move")
        return self


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_SERVICE_NAME)
    template: ServiceTemplate
    instances: int = Field(ge=0, le=MAX_INSTANCES)
    update: UpdatePolicy = Field(default_factory=UpdatePolicy)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not is_dns_label(v):
            raise ValueError(DNS_LABEL_MSG)
        return v


class ServiceScale(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: int = Field(ge=0, le=MAX_INSTANCES)


class ServiceUpdate(BaseModel):
    """A new template (a new revision, rolled out), and optionally new rolling-update bounds."""

    model_config = ConfigDict(extra="forbid")
    template: ServiceTemplate
    update: UpdatePolicy | None = None
