"""ServerSettings reads `CELLPLANE_*` itself (no pydantic-settings in the server): the same values,
from the same variables, as pydantic-settings' BaseSettings gave it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from cellplane.settings import ServerSettings


class _Reference(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CELLPLANE_")


# The same fields under pydantic-settings (without the cross-field check, tested apart below).
Reference: Any = create_model(  # type: ignore[call-overload]
    "Reference",
    __base__=_Reference,
    **{name: (f.annotation, f) for name, f in ServerSettings.model_fields.items()},
)

ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"CELLPLANE_DATA_DIR": "/srv/cp", "CELLPLANE_LISTEN_PORT": "8443"},
    {"cellplane_listen_host": "0.0.0.0", "Cellplane_Log_Level": "debug"},
    {"CELLPLANE_API_DOCS": "false", "CELLPLANE_MAX_BODY_BYTES": "4096"},
    {"CELLPLANE_API_DOCS": "1", "CELLPLANE_HEARTBEAT_DOWN_S": "30.5"},
    {"CELLPLANE_DATABASE_URL": "", "CELLPLANE_MAX_IMAGE_BYTES": "2048"},
    {"CELLPLANE_DATABASE_URL": "postgresql+psycopg://cp@db/cp", "CELLPLANE_OTHER": "x"},
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_environment_gives_what_pydantic_settings_gave(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.upper().startswith("CELLPLANE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ours = ServerSettings(data_dir=Path("/given")) if not env else ServerSettings()
    theirs = Reference(data_dir=Path("/given")) if not env else Reference()
    assert ours.model_dump() == theirs.model_dump()


def test_a_keyword_wins_over_the_environment_and_the_database_defaults_to_sqlite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELLPLANE_DATA_DIR", "/from/env")
    monkeypatch.setenv("CELLPLANE_DATABASE_URL", "")
    s = ServerSettings(data_dir=Path("/given"))
    assert s.data_dir == Path("/given")
    assert s.resolved_database_url() == "sqlite:////given/server/cellplane.db"


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"CELLPLANE_LISTEN_PORT": "http"}, "listen_port"),
        ({"CELLPLANE_API_DOCS": "perhaps"}, "api_docs"),
        ({"CELLPLANE_MAX_HEADER_BYTES": "10"}, "max_header_bytes"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field_like_before(
    env: dict[str, str], field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=field) as ours:
        ServerSettings(data_dir=Path("/given"))
    with pytest.raises(ValidationError) as theirs:
        Reference(data_dir=Path("/given"))
    assert [e["loc"] for e in ours.value.errors()] == [e["loc"] for e in theirs.value.errors()]


def test_an_unknown_keyword_is_refused() -> None:
    with pytest.raises(ValidationError, match="listen_prot"):
        ServerSettings(data_dir=Path("/given"), listen_prot=1)
