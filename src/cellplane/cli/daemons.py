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
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="CELLPLANE_DATA_DIR", help="Where state lives."),
]


def prepare(data_dir: Path, database_url: str | None) -> tuple[str | None, Path]:
    """Migrate and seed; returns (new admin token or None, join token file). A database made
    by a newer release ends the command with its message and exit code 3, changing nothing."""
    from cellplane.daemon import DatabaseNewerThanServer
    from cellplane.daemon import prepare as _prepare

    try:
        return _prepare(data_dir, database_url)
    except DatabaseNewerThanServer as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(exc.EXIT_CODE) from None


def server(
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None, typer.Option(envvar="CELLPLANE_DATABASE_URL", help="SQLAlchemy URL.")
    ] = None,
    host: Annotated[str, typer.Option(envvar="CELLPLANE_LISTEN_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="CELLPLANE_LISTEN_PORT")] = 7400,
    log_level: Annotated[str, typer.Option(envvar="CELLPLANE_LOG_LEVEL")] = "info",
    tls: Annotated[
        bool, typer.Option("--tls/--no-tls", help="Serve HTTPS with the deployment's CA.")
    ] = False,
    trusted_proxies: Annotated[
        str,
        typer.Option(
            envvar="CELLPLANE_TRUSTED_PROXIES",
            help="Comma-separated proxy addresses/networks whose X-Forwarded-For is believed "
            "(none by default).",
        ),
    ] = "",
    also_listen: Annotated[
        list[str] | None,
        typer.Option(
            help="Another address to serve on (same port), e.g. the dev hosts' 10.77.0.1."
        ),
    ] = None,
) -> None:
    """Run the control plane: API, controllers and task engine."""
    from cellplane.daemon import run_server
    from cellplane.paths import default_data_dir

    code = run_server(
        data_dir or default_data_dir(),
        database_url,
        host,
        port,
        log_level,
        tls,
        trusted_proxies=trusted_proxies,
        also_listen=also_listen,
    )
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
    parallelism: Annotated[
        int,
        typer.Option(help="The most engine operations at once (fewer when more gain nothing)."),
    ] = 16,
    fixed_parallelism: Annotated[
        bool, typer.Option(help="Always --parallelism, not adapted to the engine's throughput.")
    ] = False,
    log_level: Annotated[str, typer.Option(envvar="CELLPLANE_LOG_LEVEL")] = "info",
    ca_file: Annotated[
        Path | None,
        typer.Option(envvar="CELLPLANE_CA_CERT", help="CA certificate of an HTTPS server."),
    ] = None,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox/--no-sandbox",
            help="Offer the sandbox isolation class when gVisor's runsc runs here.",
        ),
    ] = True,
    runsc_platform: Annotated[
        str, typer.Option(envvar="CELLPLANE_RUNSC_PLATFORM", help="gVisor platform.")
    ] = "ptrace",
    overlay: Annotated[
        bool,
        typer.Option(
            envvar="CELLPLANE_AGENT_OVERLAY",
            help="Project networks across hosts: VXLAN from --address (the underlay).",
        ),
    ] = False,
    driver: Annotated[
        str,
        typer.Option(
            envvar="CELLPLANE_AGENT_DRIVER",
            help="Cell driver: podman (default) or runc (runc directly; docs/drivers.md).",
        ),
    ] = "podman",
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
        fixed_parallelism=fixed_parallelism,
        log_level=log_level,
        ca_file=ca_file,
        sandbox=sandbox,
        runsc_platform=runsc_platform,
        overlay=overlay,
        driver_name=driver,
    )
    raise typer.Exit(code)


def up(
    data_dir: DataDir = None,
    port: Annotated[int, typer.Option(envvar="CELLPLANE_LISTEN_PORT")] = 7400,
    database_url: Annotated[str | None, typer.Option(envvar="CELLPLANE_DATABASE_URL")] = None,
    tls: Annotated[
        bool, typer.Option("--tls/--no-tls", help="HTTPS with the deployment's own CA.")
    ] = True,
    hosts: Annotated[
        int,
        typer.Option(
            min=0,
            max=30,
            help="Also run this many dev hosts h1..hN (zones z1..zN; `cellplane dev hosts`, root).",
        ),
    ] = 0,
) -> None:
    """Run an all-in-one Cellplane on this machine (server + agent); Ctrl-C stops it.

    With TLS (the default) the server speaks HTTPS with a certificate from the deployment's CA;
    the CA's root certificate is copied next to the CLI configuration, which records it, so the
    CLI, the SDK and the local agent verify the server with it.
    """
    from rich.console import Console

    from cellplane.client.config import save_config
    from cellplane.paths import default_data_dir

    console = Console(stderr=True)
    gateway = _underlay() if hosts else None
    data_dir = (data_dir or default_data_dir()).absolute()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    with console.status("Preparing the data directory"):
        admin, join_file = prepare(data_dir, database_url)
        ca_file = _install_ca(data_dir) if tls else None
    if admin:
        path = save_config(url, admin, str(ca_file) if ca_file else None)
        console.print(f"[bold]Bootstrap admin token[/] (shown once, saved to {path}):\n  {admin}")
        password_file = data_dir / "server" / "admin-password"
        if password_file.exists():
            console.print(
                f"The [bold]admin[/] user's first password is in {password_file} (mode 0600): "
                f"`cellplane login --username admin --password-stdin < {password_file}`"
            )
    else:
        _update_config(url, ca_file)
    py = [sys.executable, "-m", "cellplane.daemon"]
    env = dict(os.environ)
    if database_url:
        env["CELLPLANE_DATABASE_URL"] = database_url
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = _StopFlag()

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
                    [*py, "server", "--data-dir", str(data_dir), "--port", str(port)]
                    + (["--tls"] if tls else [])
                    + (["--also-listen", gateway] if gateway else []),
                    env=env,
                    start_new_session=True,
                ),
            )
        )
        if not _wait_ready(url, children[0][1], stopping, ca_file):
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
                        *(["--ca-file", str(ca_file)] if ca_file else []),
                    ],
                    env=env,
                    start_new_session=True,
                ),
            )
        )
        if gateway:
            _start_dev_hosts(
                console, hosts, data_dir, url.replace("127.0.0.1", gateway), join_file, ca_file
            )
        console.print(f"[green]Cellplane is up[/] at {url} (data in {data_dir}). Ctrl-C stops it.")
        while not stopping.is_set():
            for role, c in children:
                if c.poll() is not None:
                    console.print(f"[red]the {role} exited with code {c.returncode}[/]")
                    code = 1
                    stopping.set()
            time.sleep(0.5)
    finally:
        if gateway:
            _stop_dev_hosts(data_dir)
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


def _underlay() -> str:
    from cellplane import devhosts

    try:
        return devhosts.ensure_underlay()
    except devhosts.DevHostError as e:
        typer.secho(f"--hosts: {e}", fg="red", err=True)
        raise typer.Exit(2) from None


def _start_dev_hosts(
    console: Any, count: int, data_dir: Path, url: str, join_file: Path, ca_file: Path | None
) -> None:
    """Dev hosts h1..hN (`cellplane dev hosts`): created once, their agents (re)started."""
    from cellplane import devhosts

    token = join_file.read_text().strip()
    have = {h.name for h in devhosts.list_hosts(data_dir)}
    for i in range(1, count + 1):
        name = f"h{i}"
        if name in have:
            host = devhosts.start_agent(
                data_dir, name, server_url=url, join_token=token, ca_file=ca_file
            )
        else:
            host = devhosts.add_host(
                name,
                data_dir=data_dir,
                server_url=url,
                join_token=token,
                ca_file=ca_file,
                zone=f"z{i}",
            )
        console.print(f"dev host [bold]{name}[/] at {host.address} (agent pid {host.pid})")


def _stop_dev_hosts(data_dir: Path) -> None:
    """Stop the dev hosts' agents (their cells keep running; `up --hosts` starts them again)."""
    from cellplane import devhosts

    for host in devhosts.list_hosts(data_dir):
        devhosts.kill_agent(data_dir, host.name, signal.SIGTERM)


class _StopFlag:
    """Set by the SIGINT/SIGTERM handler of `up`. A plain attribute, not a threading.Event:
    Event.set() takes the lock that Event.wait() holds for a moment in the interrupted main
    thread, and a handler that runs at that moment deadlocks `up` (seen: Ctrl-C hanging)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def _install_ca(data_dir: Path) -> Path:
    """Create (once) the deployment CA and copy its root next to the CLI configuration."""
    from cellplane.client.config import config_path
    from cellplane.daemon import ca_bundle

    pem = ca_bundle(data_dir).read_bytes()
    directory = config_path().parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o700)
    target = directory / "ca.pem"
    tmp = directory / ".ca.pem.tmp"
    tmp.write_bytes(pem)
    tmp.chmod(0o644)  # a certificate is public
    tmp.replace(target)
    return target


def _update_config(url: str, ca_file: Path | None) -> None:
    """Point an existing configuration for this port at ``url`` and ``ca_file`` (the token is
    kept: it is not shown again), e.g. after switching between --tls and --no-tls."""
    import json

    from cellplane.client.config import config_path, save_config

    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(data, dict):
        return
    token, server = data.get("token"), data.get("server")
    if not isinstance(token, str) or not isinstance(server, str):
        return
    if server.partition("://")[2] != url.partition("://")[2]:
        return  # configured for another server: leave it alone
    ca = str(ca_file) if ca_file else None
    if server != url or data.get("ca_cert") != ca:
        save_config(url, token, ca)


def _wait_ready(
    url: str,
    proc: subprocess.Popen[bytes],
    stopping: _StopFlag,
    ca_file: Path | None = None,
) -> bool:
    import ssl

    import httpx

    verify: bool | ssl.SSLContext = (
        ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stopping.is_set():
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(f"{url}/readyz", timeout=1, verify=verify).status_code == 200:
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
