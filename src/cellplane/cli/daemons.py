"""Long-running commands: `cellplane server`, `cellplane agent`, and `cellplane up` (both, supervised).

`up` prepares the data directory (schema, default tenant, flavors, the bootstrap admin credential
and the join token), then runs the server and the agent as two child processes; the agent speaks
HTTP to the server exactly as it would from another machine. Ctrl-C stops both; containers keep
running under the engine's monitors and are adopted on the next start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="CELLPLANE_DATA_DIR", help="Where state lives."),
]


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def prepare(data_dir: Path, database_url: str | None) -> tuple[str | None, Path]:
    """Migrate and seed; returns (new admin token or None, join token file)."""
    from cellplane.services.auth import seed
    from cellplane.services.context import Services
    from cellplane.settings import ServerSettings
    from cellplane.state.db import Database, migrate

    settings = ServerSettings(data_dir=data_dir, database_url=database_url)
    settings.server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = settings.resolved_database_url()
    migrate(url)
    db = Database(url)
    try:
        seeded = seed(Services(db=db, data_dir=settings.server_dir))
    finally:
        db.dispose()
    join_file = settings.server_dir / "join-token"
    if seeded.join_token:
        _write_secret(join_file, seeded.join_token)
    return seeded.admin_token, join_file


def server(
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None, typer.Option(envvar="CELLPLANE_DATABASE_URL", help="SQLAlchemy URL.")
    ] = None,
    host: Annotated[str, typer.Option(envvar="CELLPLANE_LISTEN_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CELLPLANE_LISTEN_PORT")] = 7400,
    log_level: Annotated[str, typer.Option(envvar="CELLPLANE_LOG_LEVEL")] = "info",
) -> None:
    """Run the control plane: API, controllers and task engine."""
    import uvicorn

    from cellplane import logs
    from cellplane.api.app import create_app
    from cellplane.services.context import Services
    from cellplane.settings import ServerSettings, default_data_dir
    from cellplane.state.db import Database

    logs.configure(log_level)
    data_dir = data_dir or default_data_dir()
    admin, _ = prepare(data_dir, database_url)
    if admin:
        typer.echo(f"Bootstrap admin token (shown once): {admin}", err=True)
    settings = ServerSettings(data_dir=data_dir, database_url=database_url)
    db = Database(settings.resolved_database_url())
    svc = Services(db=db, data_dir=settings.server_dir)
    app = create_app(svc)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
    db.dispose()


def agent(
    server_url: Annotated[str, typer.Option("--server", envvar="CELLPLANE_SERVER")] = (
        "http://127.0.0.1:7400"
    ),
    join_token: Annotated[str | None, typer.Option(envvar="CELLPLANE_JOIN_TOKEN")] = None,
    join_token_file: Annotated[Path | None, typer.Option()] = None,
    data_dir: DataDir = None,
    name: Annotated[str | None, typer.Option(help="Host name (default: this machine's).")] = None,
    address: Annotated[str, typer.Option(help="Address the server reaches this agent at.")] = (
        "127.0.0.1"
    ),
    label: Annotated[list[str] | None, typer.Option(help="Host label key=value.")] = None,
    zone: Annotated[str | None, typer.Option()] = None,
    cpu_ratio: Annotated[float, typer.Option(help="CPU overcommit ratio.")] = 16.0,
    parallelism: Annotated[int, typer.Option(help="Engine operations at once.")] = 8,
    log_level: Annotated[str, typer.Option(envvar="CELLPLANE_LOG_LEVEL")] = "info",
) -> None:
    """Run the host agent: its own podman engine, reconciling the cells assigned to this host."""
    import socket

    from cellplane import logs
    from cellplane.agent.endpoint import AgentEndpoint
    from cellplane.agent.runner import Agent, AgentConfig
    from cellplane.agent.server_client import ServerClient
    from cellplane.drivers.engine import PodmanService
    from cellplane.drivers.podman import PodmanDriver
    from cellplane.settings import default_data_dir

    logs.configure(log_level)
    token = join_token or (join_token_file.read_text().strip() if join_token_file else None)
    if not token:
        typer.secho(
            "a join token is needed (--join-token or --join-token-file)", fg="red", err=True
        )
        raise typer.Exit(2)
    labels = {}
    for item in label or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--label")
        labels[k] = v
    base = (data_dir or default_data_dir()) / "agent"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = PodmanService(base / "engine")
    driver = PodmanDriver(engine.start())
    cfg = AgentConfig(
        server_url=server_url,
        join_token=token,
        data_dir=base,
        name=name or socket.gethostname(),
        address=address,
        labels=labels,
        zone=zone,
        cpu_ratio=cpu_ratio,
        parallelism=parallelism,
    )
    client = ServerClient(server_url)
    runner = Agent(cfg, driver, client)
    endpoint = AgentEndpoint(driver, runner.agent_secret, host=address)
    endpoint.start()
    runner.agent_url = endpoint.url
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        threading.Thread(target=_register_and_run, args=(runner, stop), daemon=True).start()
        stop.wait()
    finally:
        runner.stop()
        endpoint.stop()
        client.close()
        engine.stop()


def _register_and_run(runner: object, stop: threading.Event) -> None:
    from cellplane.agent.runner import Agent

    assert isinstance(runner, Agent)
    try:
        runner.register()
        runner.start()
    except Exception:
        stop.set()
        raise


def up(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option(envvar="CELLPLANE_LISTEN_PORT")] = 7400,
    database_url: Annotated[str | None, typer.Option(envvar="CELLPLANE_DATABASE_URL")] = None,
) -> None:
    """Run an all-in-one Cellplane on this machine (server + agent); Ctrl-C stops it."""
    from rich.console import Console

    from cellplane.cli.config import save_config
    from cellplane.settings import default_data_dir

    console = Console(stderr=True)
    data_dir = (data_dir or default_data_dir()).absolute()
    url = f"http://127.0.0.1:{port}"
    with console.status("Preparing the data directory"):
        admin, join_file = prepare(data_dir, database_url)
    if admin:
        path = save_config(url, admin)
        console.print(f"[bold]Bootstrap admin token[/] (shown once, saved to {path}):\n  {admin}")
    py = [sys.executable, "-m", "cellplane"]
    env = dict(os.environ)
    if database_url:
        env["CELLPLANE_DATABASE_URL"] = database_url
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        children.append(
            (
                "server",
                subprocess.Popen(
                    [*py, "server", "--data-dir", str(data_dir), "--port", str(port)],
                    env=env,
                    start_new_session=True,
                ),
            )
        )
        if not _wait_ready(url, children[0][1], stopping):
            console.print("[red]the server did not become ready; see its log above[/]")
            code = 1
            return
        children.append(
            (
                "agent",
                subprocess.Popen(
                    [
                        *py,
                        "agent",
                        "--server",
                        url,
                        "--join-token-file",
                        str(join_file),
                        "--data-dir",
                        str(data_dir),
                    ],
                    env=env,
                    start_new_session=True,
                ),
            )
        )
        console.print(f"[green]Cellplane is up[/] at {url} (data in {data_dir}). Ctrl-C stops it.")
        while not stopping.is_set():
            for role, c in children:
                if c.poll() is not None:
                    console.print(f"[red]the {role} exited with code {c.returncode}[/]")
                    code = 1
                    stopping.set()
            stopping.wait(0.5)
    finally:
        for _, c in reversed(children):
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)
        for _, c in reversed(children):
            try:
                c.wait(timeout=20)
            except subprocess.TimeoutExpired:
                c.kill()
        console.print("Cellplane stopped; cells keep running and are adopted on the next start.")
    raise typer.Exit(code)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], stopping: threading.Event) -> bool:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopping.is_set():
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def register(app: typer.Typer) -> None:
    """Attach the daemon commands to the root CLI app."""
    app.command("up")(up)
    app.command("server")(server)
    app.command("agent")(agent)
