"""Settings of the server and the agent, from flags and `CELLPLANE_*` environment variables.

A plain pydantic model that reads its environment variables itself, as pydantic-settings'
`BaseSettings` did for these simple fields (the name after ``CELLPLANE_``, in any case; the text
validated in pydantic's lax mode; a keyword argument wins over the environment): the server then
does without pydantic-settings and python-dotenv (1.0 MB of resident memory, measured).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cellplane.host_paths import HostPathError, parse_allowed
from cellplane.paths import default_data_dir
from cellplane.registries import RegistryError, parse_registries

__all__ = ["ENV_PREFIX", "ServerSettings", "default_data_dir"]

ENV_PREFIX = "CELLPLANE_"


def _from_environment(fields: list[str]) -> dict[str, str]:
    """The ``CELLPLANE_<FIELD>`` variables that are set (names compared without case)."""
    wanted = {f"{ENV_PREFIX}{name}".lower(): name for name in fields}
    found: dict[str, str] = {}
    for key, value in os.environ.items():
        name = wanted.get(key.lower())
        if name is not None:
            found[name] = value
    return found


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_environment(list(type(self).model_fields)), **values})

    # A factory: platformdirs loads only when no data dir is given (the daemons always give one).
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # default: SQLite in <data_dir>/server/cellplane.db
    listen_host: str = "127.0.0.1"
    listen_port: int = 7400
    log_level: str = "info"
    # Request limits (api/guard.py): a JSON body, an uploaded image, the headers together.
    # CELLPLANE_MAX_BODY_BYTES, CELLPLANE_MAX_IMAGE_BYTES, CELLPLANE_MAX_HEADER_BYTES.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_image_bytes: int = Field(default=64 * 1024**3, ge=1024)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    # `/docs`, `/redoc` and `/openapi.json` (CELLPLANE_API_DOCS=false hides them: 404). On by
    # default: the document describes the open-source API, published with every release, so
    # hiding it protects nothing by itself, while clients generated from it, schema-driven tests
    # and operators' tools read it; docs/operations.md ("Hardening defaults").
    api_docs: bool = True
    # Host health: SUSPECT (takes no new cells) once its agent has missed 3 heartbeats of 2 s,
    # DOWN once it has been silent this long (failover acts on DOWN).
    heartbeat_suspect_s: float = Field(default=6.0, gt=0)
    heartbeat_down_s: float = Field(default=10.0, gt=0)
    # The container registries `docker pull`/`push` may use (cellplane.registries; none: both
    # refused), e.g. CELLPLANE_REGISTRIES="127.0.0.1:5000;insecure"; docs/operations.md.
    registries: str = ""
    # The host directories cells may bind-mount (`docker run -v /srv/shared:/data`), at or below
    # one of them; `:`- or `,`-separated absolute paths (none: every host path is refused), e.g.
    # CELLPLANE_ALLOWED_HOST_PATHS="/srv/shared:/data/exports"; cellplane.host_paths.
    allowed_host_paths: str = ""

    @model_validator(mode="after")
    def _health_order(self) -> ServerSettings:
        if self.heartbeat_down_s <= self.heartbeat_suspect_s:
            raise ValueError(
                f"heartbeat_down_s ({self.heartbeat_down_s:g}) must be above "
                f"heartbeat_suspect_s ({self.heartbeat_suspect_s:g})"
            )
        try:
            parse_registries(self.registries)
        except RegistryError as exc:
            raise ValueError(f"registries: {exc}") from exc
        try:
            parse_allowed(self.allowed_host_paths)
        except HostPathError as exc:
            raise ValueError(f"allowed_host_paths: {exc}") from exc
        return self

    @property
    def server_dir(self) -> Path:
        return self.data_dir / "server"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.server_dir / 'cellplane.db'}"
