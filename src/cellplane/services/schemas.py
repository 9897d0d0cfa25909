"""Request bodies: the shape of what clients may send, validated by pydantic at the API edge.

Services receive these typed objects; semantic checks (does the image exist, does it fit) are theirs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DNS_LABEL",
    "CellCreate",
    "FlavorCreate",
    "MaintenanceBody",
    "PortBody",
    "ProjectCreate",
    "RestartBody",
    "StopBody",
    "VolumeCreate",
    "VolumeMount",
]

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_LABEL_MSG = "must be a DNS label: 1-63 of a-z, 0-9 and '-', starting and ending alphanumeric"

Name = Annotated[str, Field(min_length=1, max_length=63)]


def _check_label(v: str) -> str:
    if not DNS_LABEL.match(v):
        raise ValueError(DNS_LABEL_MSG)
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortBody(_Strict):
    container_port: int = Field(ge=1, le=65535)
    host_port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"


class VolumeMount(_Strict):
    volume: Name
    path: str = Field(min_length=1, max_length=4096)
    read_only: bool = False

    @field_validator("path")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v


class RestartBody(_Strict):
    policy: Literal["never", "on-failure", "always"] = "never"
    max_retries: int | None = Field(default=None, ge=0, le=1000)


class CellCreate(_Strict):
    name: Name
    image: str = Field(min_length=1, max_length=128)
    flavor: str | None = Field(default=None, max_length=63)
    cpu: float | None = Field(default=None, gt=0, le=1024)
    memory_mb: int | None = Field(default=None, ge=6, le=4 * 1024 * 1024)
    disk_gb: int | None = Field(default=None, ge=0, le=1024 * 1024)
    command: list[str] | None = Field(default=None, max_length=1024)
    env: dict[str, str] = Field(default_factory=dict, max_length=1024)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)
    ports: list[PortBody] = Field(default_factory=list, max_length=64)
    volumes: list[VolumeMount] = Field(default_factory=list, max_length=64)
    restart: RestartBody = Field(default_factory=RestartBody)
    stop_timeout: float = Field(default=10.0, ge=0, le=3600)
    start: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or len(k) > 253 or len(val) > 253:
                raise ValueError(f"label {k!r}: keys and values are 1-253 characters")
        return v

    @model_validator(mode="after")
    def _size(self) -> CellCreate:
        if self.flavor is not None and (self.cpu is not None or self.memory_mb is not None):
            raise ValueError("give a flavor or explicit cpu/memory_mb, not both")
        if self.flavor is None and (self.cpu is None) != (self.memory_mb is None):
            raise ValueError("explicit sizing needs both cpu and memory_mb")
        paths = [v.path for v in self.volumes]
        if len(set(paths)) != len(paths):
            raise ValueError("two volumes are mounted at the same path")
        return self


class StopBody(_Strict):
    timeout: float | None = Field(default=None, ge=0, le=3600)


class FlavorCreate(_Strict):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    cpu: float = Field(gt=0, le=1024)
    memory_mb: int = Field(ge=6, le=4 * 1024 * 1024)
    disk_gb: int = Field(ge=0, le=1024 * 1024)


class VolumeCreate(_Strict):
    name: Name
    size_gb: int = Field(default=1, ge=1, le=1024 * 1024)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v)


class ProjectCreate(_Strict):
    name: Name

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v)


class MaintenanceBody(_Strict):
    enabled: bool
