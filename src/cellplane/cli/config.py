"""Where the CLI and the SDK find the server, the token and the CA certificate.

Called by `cellplane.client.Client.from_config` (so every CLI command and any
script using the SDK share one configuration) and by `cellplane up`, which
calls `save_config` once it has created the bootstrap admin token.

The file is `platformdirs.user_config_dir("cellplane")/config.json` unless
`CELLPLANE_CONFIG` names another path. `CELLPLANE_SERVER`, `CELLPLANE_TOKEN`
and `CELLPLANE_CA_CERT` override the file, so CI jobs need no file at all.
The file holds a bearer token, hence mode 0600 in a 0700 directory and an
atomic replace: a crash never leaves a half-written or world-readable token.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "CliConfig",
    "ConfigError",
    "config_path",
    "load_config",
    "save_config",
]

CONFIG_ENV = "CELLPLANE_CONFIG"
_SERVER_ENV = "CELLPLANE_SERVER"
_TOKEN_ENV = "CELLPLANE_TOKEN"
_CA_CERT_ENV = "CELLPLANE_CA_CERT"


class ConfigError(Exception):
    """The configuration file exists but cannot be read or understood."""


@dataclass(frozen=True)
class CliConfig:
    """The effective configuration: the file merged with environment overrides."""

    server: str | None
    token: str | None
    ca_cert: str | None
    path: Path


def config_path() -> Path:
    """Return the configuration file path, honouring `CELLPLANE_CONFIG`."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override).expanduser()
    # Imported here: platformdirs is only needed when no override is set.
    import platformdirs

    return Path(platformdirs.user_config_dir("cellplane")) / "config.json"


def _env(name: str) -> str | None:
    # An empty variable is treated as unset so `CELLPLANE_TOKEN= cmd` falls back to the file.
    value = os.environ.get(name)
    return value or None


def _str_field(data: dict[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"{path}: {key!r} must be a string or null")


def load_config() -> CliConfig:
    """Read the configuration file (if any) and apply environment overrides."""
    path = config_path()
    data: dict[str, Any] = {}
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raw = None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if raw is not None:
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        data = loaded
    return CliConfig(
        server=_env(_SERVER_ENV) or _str_field(data, "server", path),
        token=_env(_TOKEN_ENV) or _str_field(data, "token", path),
        ca_cert=_env(_CA_CERT_ENV) or _str_field(data, "ca_cert", path),
        path=path,
    )


def save_config(server: str, token: str, ca_cert: str | None = None) -> Path:
    """Write the configuration file atomically (file 0600, new directory 0700); return its path."""
    path = config_path()
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        # mkdir's mode is filtered by the umask; make the intent explicit.
        directory.chmod(0o700)
    document = json.dumps({"server": server, "token": token, "ca_cert": ca_cert}, indent=2)
    # mkstemp creates the file 0600 before any secret is written to it.
    fd, tmp_name = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(document + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path
