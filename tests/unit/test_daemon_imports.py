"""What the two daemons load at start (the footprint target counts their resident memory): each
check runs a fresh interpreter that imports what `cellplane.daemon` imports for that process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

_SERVER = """
import sys
from cellplane import daemon
for name in daemon.KEPT_OUT:  # as its main() does
    sys.modules.setdefault(name, None)
import uvicorn
from cellplane import logs
from cellplane.api.app import create_app
from cellplane.api.tls import TLSH11Protocol
from cellplane.controller import runtime
from cellplane.dockerapi import supervisor
from cellplane.services.context import Services
from cellplane.settings import ServerSettings
from cellplane.state.db import Database
"""

_AGENT = """
import sys
from cellplane import daemon
for name in daemon.KEPT_OUT:
    sys.modules.setdefault(name, None)
daemon._agent_import_diet()
from cellplane import logs
from cellplane.agent.endpoint import AgentEndpoint
from cellplane.agent.runner import Agent, AgentConfig
from cellplane.agent.server_client import ServerClient
from cellplane.drivers.engine import PodmanService
from cellplane.drivers.podman import PodmanDriver
import requests
response = requests.models.Response()
response._content = b'{"name": "caf\\xc3\\xa9"}'
assert response.apparent_encoding == "utf-8" and response.text.endswith('caf\\u00e9"}')
"""

_FULL_NAMES = """
import json
print(json.dumps(sorted(m for m, mod in sys.modules.items() if mod is not None)))
sys.exit()
"""

_REPORT = """
import json
print(json.dumps(sorted({m.split(".")[0] for m, mod in sys.modules.items() if mod is not None})))
"""


def loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code + _REPORT],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    return set(json.loads(out.stdout))


def test_the_server_starts_without_the_token_crypto_templates_or_yaml() -> None:
    """joserfc and cryptography load with the first access token (Services.tokens), jinja2 and
    yaml with the first catalog load or login page, numpy with a large placement batch, aiohttp
    and the Docker-compatible handlers with the first Docker endpoint."""
    mods = loaded(_SERVER)
    assert {"fastapi", "sqlalchemy", "uvicorn", "pydantic"} <= mods
    assert not mods & {"joserfc", "cryptography", "authlib", "argon2", "jinja2", "yaml", "numpy"}
    assert not mods & {"aiohttp", "multidict", "yarl"}
    assert not mods & {"alembic", "rich", "pygments", "typer"}
    assert not mods & {"greenlet", "platformdirs", "httpcore", "pydantic_settings", "dotenv"}
    assert "pydantic.v1" not in loaded(_SERVER + _FULL_NAMES)


def test_the_agent_keeps_out_what_its_libraries_only_might_use() -> None:
    """No click (httpx's command line), no character-set guessing (requests, whose only peer is
    podman's JSON), no warning about it; requests still decodes UTF-8. No pydantic: the agent
    reads the protocol with `wire.agent_plain`."""
    mods = loaded(_AGENT)
    assert {"docker", "requests", "httpx"} <= mods
    assert not mods & {"click", "charset_normalizer", "chardet", "rich", "pygments", "typer"}
    assert not mods & {"pydantic", "pydantic_core"}
    assert not mods & {"cryptography", "fastapi", "sqlalchemy"}
    assert not mods & {"greenlet", "platformdirs"}


_SERVER_STARTED = """
import sys, tempfile
from pathlib import Path
from cellplane import daemon
for name in daemon.KEPT_OUT:
    sys.modules.setdefault(name, None)
import structlog
from cellplane import logs
from cellplane.controller.clusters.loop import ClusterExecutor
from cellplane.services.context import Services
from cellplane.settings import ServerSettings
from cellplane.state.db import Database, migrate
logs.configure("info")
structlog.get_logger("test").info("logged without greenlet", n=1)
with tempfile.TemporaryDirectory() as tmp:
    settings = ServerSettings(data_dir=Path(tmp))
    url = settings.resolved_database_url()
    settings.server_dir.mkdir(parents=True)
    migrate(url, key_dir=settings.server_dir)
    db = Database(url)
    executor = ClusterExecutor(Services(db=db, data_dir=settings.server_dir))
    assert executor._http_client is None and "httpcore" not in sys.modules
    client = executor._http
    assert executor._http is client
    # Plain HTTP agents: no CA bundle in the plain transport's TLS context.
    assert client._transport._plain._pool._ssl_context.cert_store_stats()["x509_ca"] == 0
    executor.close()
    assert executor._http_client is None
    # The API builds and answers without pydantic.v1 (FastAPI only asks about it).
    import warnings
    with warnings.catch_warnings():  # starlette's: "install httpx2" (the suite's other tests too)
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from cellplane.api.app import create_app
    with TestClient(create_app(Services(db=db, data_dir=settings.server_dir))) as client:
        assert client.get("/healthz").status_code == 200
        assert "/v1/projects/{project}/cells" in client.get("/openapi.json").json()["paths"]
    db.dispose()
"""


def test_a_server_without_greenlet_logs_and_makes_its_agent_client_on_first_use() -> None:
    """The API answers with pydantic.v1 kept out; structlog logs with greenlet kept out; settings given a data dir never load platformdirs;
    the cluster executor's client to the agents (and a CA bundle with it) is made on first use."""
    mods = loaded(_SERVER_STARTED)
    assert not mods & {"greenlet", "platformdirs"}
