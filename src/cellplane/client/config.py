"""Where the SDK finds the server, the credentials and the CA certificate.

Called by `cellplane.client.Client.from_config` (so every CLI command and any
script using the SDK share one configuration), by `cellplane up`
(`cellplane.cli.daemons`), which calls `save_config` once it has created the
bootstrap admin token, and by `cellplane login`/`logout` (`cellplane.cli.login`),
which store and drop a login session. It belongs to the SDK, not to the CLI: a
script that talks to Cellplane reads the same file without loading the CLI.

The file is `platformdirs.user_config_dir("cellplane")/config.json` unless
`CELLPLANE_CONFIG` names another path. `CELLPLANE_SERVER`, `CELLPLANE_TOKEN`
and `CELLPLANE_CA_CERT` override the file, so CI jobs need no file at all.

The file holds secrets, hence mode 0600 in a 0700 directory and an atomic
replace: a crash never leaves a half-written or world-readable file. Its
shape::

    {"server": "https://cp:7400", "token": "cpt_...", "ca_cert": "/path/ca.pem",
     "session": {...}}

- `servers` (instead of `server`): several replicas of one deployment, tried in
  order; a connection error moves to the next (as a comma-separated `server` or
  `CELLPLANE_SERVER` does).
- `token`: a fixed bearer token (a personal access token, `cpt_...`), as
  written by `cellplane up`.
- `session` (optional): an OAuth login session of `cellplane login`, see
  `LoginSession`: the tenant, who logged in, the access token and its expiry,
  and what renews it: the refresh token of a user login, or, for a service
  account, its client id **and client secret** (client_credentials has no
  refresh token, so the secret is what gets the next access token; it is
  stored in this 0600 file, readable by the owner only).

Which credential a request carries: `CELLPLANE_TOKEN` if set (it wins over
everything, CI), else the session if it belongs to the configured server,
else `token`. `cellplane.client.credentials.SessionCredentials` renews the session's access token
transparently: refresh tokens rotate, so each renewal is done under a lock
file next to the configuration, re-reads the file first (another process may
have renewed already) and writes the new refresh token before the new access
token is used; a refresh is never retried with an old token.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cellplane.server_urls import parse_servers

__all__ = [
    "BUILTIN_CLIENT_ID",
    "CONFIG_ENV",
    "REFRESH_MARGIN_S",
    "ClientConfig",
    "ConfigError",
    "LoginSession",
    "clear_session",
    "config_path",
    "load_config",
    "read_document",
    "read_session",
    "save_config",
    "save_session",
    "session_lock",
    "store_session",
]

CONFIG_ENV = "CELLPLANE_CONFIG"
_SERVER_ENV = "CELLPLANE_SERVER"
_TOKEN_ENV = "CELLPLANE_TOKEN"
_CA_CERT_ENV = "CELLPLANE_CA_CERT"

#: The public OAuth client every tenant has: the CLI's password and refresh grants use it.
BUILTIN_CLIENT_ID = "cellplane-cli"
#: An access token this close to its expiry is renewed before a request is sent.
REFRESH_MARGIN_S = 30.0


class ConfigError(Exception):
    """The configuration file exists but cannot be read or understood."""


@dataclass(frozen=True)
class LoginSession:
    """A stored `cellplane login`: enough to call the API and to renew the access token.

    `kind` is "user" (password login: `refresh_token` renews it) or "service" (a service
    account: `client_id` + `client_secret` get a new token with client_credentials).
    `expires_at` is the access token's expiry in epoch seconds, by this machine's clock.
    """

    server: str
    tenant: str
    kind: str
    client_id: str
    access_token: str
    expires_at: float
    token_endpoint: str
    revocation_endpoint: str | None = None
    refresh_token: str | None = None
    client_secret: str | None = None
    username: str | None = None
    subject: str | None = None
    name: str | None = None

    def expires_within(self, seconds: float, now: float | None = None) -> bool:
        """Whether the access token is gone or expires in less than `seconds`."""
        now = time.time() if now is None else now
        return not self.access_token or self.expires_at - now < seconds

    @property
    def renewable(self) -> bool:
        """Whether a new access token can be had without logging in again."""
        if self.kind == "service":
            return bool(self.client_secret)
        return bool(self.refresh_token)

    def same_login(self, other: LoginSession) -> bool:
        """Whether `other` is (a renewal of) the same login."""
        return (self.server, self.tenant, self.kind, self.client_id, self.subject) == (
            other.server,
            other.tenant,
            other.kind,
            other.client_id,
            other.subject,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, path: Path) -> LoginSession:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'session' must be an object")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue  # written by a newer cellplane: ignore
            if key == "expires_at":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{path}: 'session.expires_at' must be a number")
                values[key] = float(value)
            elif value is None or isinstance(value, str):
                values[key] = value
            else:
                raise ConfigError(f"{path}: 'session.{key}' must be a string or null")
        required = ("server", "tenant", "kind", "client_id", "token_endpoint")
        missing = [k for k in required if not values.get(k)]
        if missing:
            raise ConfigError(f"{path}: 'session' lacks {', '.join(missing)}")
        values.setdefault("access_token", "")
        values["access_token"] = values["access_token"] or ""
        values.setdefault("expires_at", 0.0)
        return cls(**values)


@dataclass(frozen=True)
class ClientConfig:
    """The effective configuration: the file merged with environment overrides.

    `session` is the stored login session when it is the credential in effect: None when
    `CELLPLANE_TOKEN` is set or when the session belongs to another server than `server`.
    """

    server: str | None
    token: str | None
    ca_cert: str | None
    path: Path
    session: LoginSession | None = None


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


def _servers(data: dict[str, Any], path: Path) -> str | None:
    """``servers: ["https://a:7400", "https://b:7400"]`` (replicas) as one comma-separated URL
    list; None when absent."""
    value = data.get("servers")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        raise ConfigError(f"{path}: 'servers' must be a non-empty list of URLs")
    return ",".join(value)


def read_document(path: Path | None = None) -> dict[str, Any]:
    """The configuration file as a JSON object ({} when there is no file)."""
    path = config_path() if path is None else path
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        loaded = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return loaded


def _session_of(data: Mapping[str, Any], path: Path) -> LoginSession | None:
    raw = data.get("session")
    return None if raw is None else LoginSession.from_json(raw, path)


def load_config() -> ClientConfig:
    """Read the configuration file (if any) and apply environment overrides."""
    path = config_path()
    data = read_document(path)
    server = _env(_SERVER_ENV) or _str_field(data, "server", path) or _servers(data, path)
    if server is not None:
        try:  # several replicas: comma-separated; checked here, where the file is named
            server = ",".join(parse_servers(server))
        except ValueError as exc:
            raise ConfigError(f"{path} or {_SERVER_ENV}: {exc}") from None
    env_token = _env(_TOKEN_ENV)
    session = _session_of(data, path)
    if env_token or session is None or server is None or _norm(session.server) != _norm(server):
        session = None
    return ClientConfig(
        server=server,
        token=env_token or _str_field(data, "token", path),
        ca_cert=_env(_CA_CERT_ENV) or _str_field(data, "ca_cert", path),
        path=path,
        session=session,
    )


def read_session(path: Path | None = None) -> LoginSession | None:
    """The stored login session as the file holds it, whatever the environment says."""
    path = config_path() if path is None else path
    return _session_of(read_document(path), path)


def _norm(url: str) -> str:
    return url.rstrip("/").lower()


def _write_document(path: Path, document: Mapping[str, Any]) -> Path:
    """Replace the file atomically with `document` (file 0600, new directory 0700)."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        # mkdir's mode is filtered by the umask; make the intent explicit.
        directory.chmod(0o700)
    text = json.dumps(document, indent=2)
    # mkstemp creates the file 0600 before any secret is written to it.
    fd, tmp_name = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o600)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return path


def save_config(server: str, token: str, ca_cert: str | None = None) -> Path:
    """Write the configuration file atomically (file 0600, new directory 0700); return its path.

    This is a token configuration: a login session stored before is dropped (it belonged to
    the previous configuration, e.g. the data directory `cellplane up` just created anew).
    """
    document = {"server": server, "token": token, "ca_cert": ca_cert}
    return _write_document(config_path(), document)


# -- login sessions ---------------------------------------------------------------------------

_THREAD_LOCK = threading.Lock()


@contextlib.contextmanager
def session_lock(path: Path | None = None) -> Iterator[None]:
    """Hold the configuration's lock file (`config.json.lock`, 0600) for a read-modify-write.

    Renewing a session must be one at a time across processes: refresh tokens rotate, and a
    second process refreshing with the token the first one just used would end the session.
    On a system without `fcntl` only threads of this process are serialised.
    """
    path = config_path() if path is None else path
    with _THREAD_LOCK:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        directory = path.parent
        if not directory.exists():
            directory.mkdir(parents=True, mode=0o700)
            directory.chmod(0o700)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def save_session(
    server: str, ca_cert: str | None, session: LoginSession, *, path: Path | None = None
) -> Path:
    """Store a new login: the server, its CA and the session; return the file's path.

    A fixed `token` already in the file is kept when the server is the same one (the
    bootstrap token is not shown again; the session takes precedence while it exists) and
    dropped when the login is for another server. Call under `session_lock`.
    """
    path = config_path() if path is None else path
    try:
        old = read_document(path)
    except ConfigError:
        old = {}  # a broken file is replaced by the login
    old_server, old_token = old.get("server"), old.get("token")
    same = isinstance(old_server, str) and _norm(old_server) == _norm(server)
    document = {
        "server": server,
        "token": old_token if same and isinstance(old_token, str) else None,
        "ca_cert": ca_cert,
        "session": session.to_json(),
    }
    return _write_document(path, document)


def store_session(path: Path, session: LoginSession | None) -> None:
    """Replace only the session of the file, or drop it (call under `session_lock`)."""
    document = dict(read_document(path))
    if session is None:
        document.pop("session", None)
    else:
        document["session"] = session.to_json()
    _write_document(path, document)


def clear_session(path: Path | None = None) -> LoginSession | None:
    """Drop the stored session (logout); return it, or None when there was none."""
    path = config_path() if path is None else path
    with session_lock(path):
        session = read_session(path)
        if session is not None:
            store_session(path, None)
    return session
