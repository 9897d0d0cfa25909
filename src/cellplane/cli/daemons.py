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


def prepare(data_dir: Path, database_url: str | None) -> tuple[str | None, Path]:
    """Migrate and seed; returns (new admin token or None, join token file)."""
    from cellplane.daemon import prepare as _prepare

    return _prepare(data_dir, database_url)


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
    from cellplane.daemon import run_server
    from cellplane.paths import default_data_dir

    code = run_server(data_dir or default_data_dir(), database_url, host, port, log_level)
    raise typer.Exit(code)


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
    from cellplane.daemon import run_agent
    from cellplane.paths import default_data_dir

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
    code = run_agent(
        server_url=server_url,
        join_token=token,
        data_dir=data_dir or default_data_dir(),
        name=name,
        address=address,
        labels=labels,
        zone=zone,
        cpu_ratio=cpu_ratio,
        parallelism=parallelism,
        log_level=log_level,
    )
    raise typer.Exit(code)


def up(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option(envvar="CELLPLANE_LISTEN_PORT")] = 7400,
    database_url: Annotated[str | None, typer.Option(envvar="CELLPLANE_DATABASE_URL")] = None,
) -> None:
    """Run an all-in-one Cellplane on this machine (server + agent); Ctrl-C stops it."""
    from rich.console import Console

    from cellplane.cli.config import save_config
    from cellplane.paths import default_data_dir

    console = Console(stderr=True)
    data_dir = (data_dir or default_data_dir()).absolute()
    url = f"http://127.0.0.1:{port}"
    with console.status("Preparing the data directory"):
        admin, join_file = prepare(data_dir, database_url)
    if admin:
        path = save_config(url, admin)
        console.print(f"[bold]Bootstrap admin token[/] (shown once, saved to {path}):\n  {admin}")
    py = [sys.executable, "-m", "cellplane.daemon"]
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
