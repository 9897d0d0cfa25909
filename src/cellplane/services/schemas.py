"""Request bodies: the shape of what clients may send, validated by pydantic at the API edge.

Services receive these typed objects; semantic checks (does the image exist, does it fit) are theirs.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cellplane import host_paths
from cellplane.validation import DNS_LABEL, DNS_LABEL_MSG, is_dns_label

__all__ = [
    "DNS_LABEL",
    "CellCreate",
    "FlavorCreate",
    "HealthCheckBody",
    "IsolationPolicy",
    "MaintenanceBody",
    "NetworkCreate",
    "PortBody",
    "ProjectCreate",
    "RestartBody",
    "StopBody",
    "VolumeCreate",
    "VolumeMount",
]

Name = Annotated[str, Field(min_length=1, max_length=63)]

#: Limits of a cell's free text (docs/api.md, "Limits"): a cell's definition travels to its host
#: with every change, so it stays small; the engine's own ceiling (ARG_MAX) is 2 MiB.
MAX_ENV = 1024
MAX_ENV_KEY = 256
MAX_ENV_VALUE = 32 * 1024
MAX_ENV_TOTAL = 256 * 1024
MAX_ARGS = 1024
MAX_ARG = 32 * 1024
MAX_ARGS_TOTAL = 128 * 1024
MAX_LABELS = 64
MAX_NETWORKS = 8  # networks one cell joins
MAX_LABEL = 253
#: A cell's own pids limit (`pids_limit`); without one its host applies the default
#: (`drivers.base.DEFAULT_PIDS_LIMIT`).
MIN_PIDS_LIMIT = 16
MAX_PIDS_LIMIT = 1_048_576


def _check_label(v: str) -> str:
    if not is_dns_label(v):
        raise ValueError(DNS_LABEL_MSG)
    return v


def _check_labels(v: dict[str, str]) -> dict[str, str]:
    """Labels (of a cell, network or volume, or a selector of them): keys and values of
    1-253 characters (a value may be empty)."""
    for k, val in v.items():
        if not k or len(k) > MAX_LABEL or len(val) > MAX_LABEL:
            raise ValueError(f"label {k[:64]!r}: keys and values are 1-253 characters")
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PortBody(_Strict):
    container_port: int = Field(ge=1, le=65535)
    host_port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"


class VolumeMount(_Strict):
    """What is mounted at `path`: a named volume of the project (`volume`) or a directory of the
    cell's host (`host_path`, absolute; only below a directory the operator allows, checked by
    the service: `services.cell_mounts`). Exactly one of the two."""

    volume: Name | None = None
    host_path: str | None = Field(default=None, min_length=1, max_length=4096)
    path: str = Field(min_length=1, max_length=4096)
    read_only: bool = False

    @field_validator("path")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v

    @field_validator("host_path")
    @classmethod
    def _host_path(cls, v: str | None) -> str | None:
        return None if v is None else host_paths.normalise(v)

    @model_validator(mode="after")
    def _one_source(self) -> VolumeMount:
        if (self.volume is None) == (self.host_path is None):
            raise ValueError("give exactly one of `volume` (a named volume) and `host_path`")
        return self


class RestartBody(_Strict):
    policy: Literal["never", "on-failure", "always"] = "never"
    max_retries: int | None = Field(default=None, ge=0, le=1000)


class HealthCheckBody(_Strict):
    """A command run in the cell's running container every `interval_s` seconds: exit 0 is
    healthy; `retries` failures in a row make it unhealthy (those in the first `start_period_s`
    do not count); a run longer than `timeout_s` fails. `shell`: `command` is one string, run
    with `/bin/sh -c` (Docker's CMD-SHELL)."""

    command: list[Annotated[str, Field(max_length=MAX_ARG)]] = Field(
        min_length=1, max_length=MAX_ARGS
    )
    shell: bool = False
    interval_s: float = Field(default=30.0, ge=0.1, le=86400)
    timeout_s: float = Field(default=30.0, ge=0.1, le=86400)
    retries: int = Field(default=3, ge=1, le=1000)
    start_period_s: float = Field(default=0.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _one_shell_string(self) -> HealthCheckBody:
        if not self.command[0]:
            raise ValueError("command: the program to run must not be empty")
        if self.shell and len(self.command) != 1:
            raise ValueError("command: with shell, one string (run with /bin/sh -c)")
        return self


class AffinityBody(_Strict):
    """Be with (`anti`: away from) cells carrying every label of `selector`; `soft`: prefer."""

    selector: dict[str, str] = Field(min_length=1, max_length=MAX_LABELS)
    anti: bool = False
    soft: bool = False

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)


class CellCreate(_Strict):
    name: Name
    image: str = Field(min_length=1, max_length=128)
    flavor: str | None = Field(default=None, min_length=1, max_length=63)
    cpu: float | None = Field(default=None, gt=0, le=1024)
    memory_mb: int | None = Field(default=None, ge=6, le=4 * 1024 * 1024)
    disk_gb: int | None = Field(default=None, ge=0, le=1024 * 1024)
    command: list[Annotated[str, Field(max_length=MAX_ARG)]] | None = Field(
        default=None, max_length=MAX_ARGS
    )
    # None: the image's own entrypoint/working directory/user; the hostname defaults to the name.
    entrypoint: list[Annotated[str, Field(max_length=MAX_ARG)]] | None = Field(
        default=None, max_length=MAX_ARGS
    )
    workdir: str | None = Field(default=None, min_length=1, max_length=4096)
    user: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[^\s:]+(:[^\s:]+)?$"
    )
    hostname: str | None = Field(default=None, min_length=1, max_length=63)
    env: dict[str, str] = Field(default_factory=dict, max_length=MAX_ENV)
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)
    ports: list[PortBody] = Field(default_factory=list, max_length=64)
    volumes: list[VolumeMount] = Field(default_factory=list, max_length=64)
    restart: RestartBody = Field(default_factory=RestartBody)
    stop_timeout: float = Field(default=10.0, ge=0, le=3600)
    healthcheck: HealthCheckBody | None = None
    start: bool = True
    # Hardening opt-ins (docs/operations.md, "Hardening defaults").
    read_only: bool = False
    pids_limit: int | None = Field(default=None, ge=MIN_PIDS_LIMIT, le=MAX_PIDS_LIMIT)
    placement: Literal["spread", "binpack"] | None = None
    affinity: list[AffinityBody] = Field(default_factory=list, max_length=16)
    # standard | sandbox; None: the tenant's or project's minimum (standard without a policy).
    isolation: Literal["standard", "sandbox"] | None = None
    # The project network the cell joins (by name); None: the project's default network.
    network: Name | None = None
    # Several networks, the first one first (`network` is the shorthand for one; not both).
    networks: list[Name] | None = Field(default=None, min_length=1, max_length=MAX_NETWORKS)

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            twice = sorted({n for n in v if v.count(n) > 1})
            raise ValueError(f"a network is named twice: {', '.join(twice)}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v)

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, v: str | None) -> str | None:
        return v if v is None else _check_label(v)

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        total = 0
        for k, val in v.items():
            if not k or len(k) > MAX_ENV_KEY or "=" in k:
                raise ValueError(
                    f"variable {k[:64]!r}: names are 1-{MAX_ENV_KEY} characters without '='"
                )
            if len(val) > MAX_ENV_VALUE:
                raise ValueError(f"variable {k!r}: values are at most {MAX_ENV_VALUE} characters")
            total += len(k) + len(val) + 2
        if total > MAX_ENV_TOTAL:
            raise ValueError(f"the environment holds {total} characters; at most {MAX_ENV_TOTAL}")
        return v

    @field_validator("command", "entrypoint")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        total = sum(len(a) + 1 for a in v or ())
        if total > MAX_ARGS_TOTAL:
            raise ValueError(f"it holds {total} characters; at most {MAX_ARGS_TOTAL}")
        return v

    @model_validator(mode="after")
    def _size(self) -> CellCreate:
        if self.flavor is not None and (self.cpu is not None or self.memory_mb is not None):
            raise ValueError("give a flavor or explicit cpu/memory_mb, not both")
        if self.network is not None and self.networks is not None:
            raise ValueError("give `network` (one network) or `networks` (a list), not both")
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
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)


class IsolationPolicy(_Strict):
    """`PATCH` of a tenant or project: the weakest isolation class its cells may use
    (`standard` or null: no minimum)."""

    isolation: Literal["standard", "sandbox"] | None


class NetworkCreate(_Strict):
    name: Name
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v == "default":
            raise ValueError("'default' is the project's own network; choose another name")
        return _check_label(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)


class ProjectCreate(_Strict):
    name: Name

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_label(v)


class MaintenanceBody(_Strict):
    enabled: bool


class MoveBody(_Strict):
    host: str = Field(min_length=1, max_length=253, description="The host's name or id.")


class JoinTokenCreate(_Strict):
    """`POST /v1/join-tokens`: lifetime in seconds (null: none) and uses (null: no limit)."""

    ttl_s: float | None = Field(default=3600.0, gt=0, le=30 * 24 * 3600)
    uses: int | None = Field(default=1, ge=1, le=10_000)
