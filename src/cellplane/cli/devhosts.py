"""`cellplane dev hosts add|rm|ls`: several Cellplane hosts on this one machine (root).

Each dev host is a network namespace on a private underlay bridge with its own agent and podman
(`cellplane.devhosts`); the agent joins the server like a remote one. The server must listen on
the underlay's address (`cellplane up --hosts N` does; or `cellplane server --also-listen
10.77.0.1`). Like `cellplane up`, these commands run the product's own machinery on this machine
rather than calling the API only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer

from cellplane.cli import output

__all__ = ["app", "underlay_url"]

app = typer.Typer(help="Hosts for trying Cellplane on one machine.", no_args_is_help=True)
hosts_app = typer.Typer(
    help="Dev hosts: network namespaces with their own agent and podman (root).",
    no_args_is_help=True,
)
app.add_typer(hosts_app, name="hosts")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="CELLPLANE_DATA_DIR", help="Cellplane's data directory."),
]


def underlay_url(server: str, gateway: str) -> str:
    """``server`` (the configured API URL) with its host replaced by the underlay ``gateway``."""
    parts = urlsplit(server)
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{gateway}{port}", parts.path, "", ""))


def _labels(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        k, sep, v = item.strip().partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="--labels")
        out[k] = v
    return out


def _data_dir(data_dir: Path | None) -> Path:
    from cellplane.paths import default_data_dir

    return (data_dir or default_data_dir()).absolute()


@hosts_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Host name (the namespace is cp-NAME).")],
    zone: Annotated[str | None, typer.Option(help="The host's zone.")] = None,
    labels: Annotated[str | None, typer.Option(help="Host labels: k=v,k2=v2.")] = None,
    server: Annotated[
        str | None,
        typer.Option(
            help="Server URL from the hosts (default: the configured server's port "
            "on the underlay address)."
        ),
    ] = None,
    join_token: Annotated[
        str | None,
        typer.Option(
            envvar="CELLPLANE_JOIN_TOKEN",
            help="Default: a new one-use token from the configured server.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a dev host and start its agent; it joins the server as a remote agent does."""
    from cellplane import devhosts
    from cellplane.client.config import load_config

    parsed = _labels(labels)
    config = load_config()
    base = _data_dir(data_dir)
    try:
        devhosts.validate(name, zone, parsed)
        gateway = devhosts.ensure_underlay()
        url = server or underlay_url(config.server or "https://127.0.0.1:7400", gateway)
        token = join_token or _new_join_token(base)
        host = devhosts.add_host(
            name,
            data_dir=base,
            server_url=url,
            join_token=token,
            ca_file=Path(config.ca_cert) if config.ca_cert else None,
            zone=zone,
            labels=parsed,
        )
    except devhosts.DevHostError as e:
        output.fail("cannot add the dev host", str(e))
    output.say(
        f"dev host [bold]{host.name}[/] at {host.address} (namespace {host.namespace}), agent "
        f"pid {host.pid} joining {url}; `cellplane host ls` shows it once it has joined"
    )


def _new_join_token(data_dir: Path) -> str:
    """A new one-use join token from the configured server (10 minutes), or, when the
    configured credential cannot make one, the local deployment's bootstrap join token."""
    from cellplane.client import CellplaneError
    from cellplane.client.config import load_config

    try:
        with output.client_factory() as c:
            return str(c.create_join_token(ttl_s=600, uses=1)["token"])
    except (CellplaneError, OSError, ValueError):
        pass
    bootstrap = data_dir / "server" / "join-token"
    if bootstrap.exists():
        return bootstrap.read_text().strip()
    server = load_config().server
    output.fail("no join token", f"pass --join-token (`cellplane host token create` on {server})")


@hosts_app.command("rm")
def rm(
    names: Annotated[list[str], typer.Argument(help="Dev host names.")],
    data_dir: DataDir = None,
) -> None:
    """Remove dev hosts: agent, engine and containers, namespaces and links."""
    from cellplane import devhosts

    base = _data_dir(data_dir)
    for name in names:
        try:
            devhosts.remove_host(base, name)
        except devhosts.DevHostError as e:
            output.fail(f"cannot remove dev host {name!r}", str(e))
        output.say(f"removed dev host {name}")


@hosts_app.command("ls")
def ls(
    data_dir: DataDir = None,
    out: Annotated[
        output.OutputFormat, typer.Option("-o", "--output", help="table, wide, json or yaml.")
    ] = output.OutputFormat.table,
) -> None:
    """The dev hosts of this machine's data directory and whether their agents run."""
    from cellplane import devhosts

    hosts = devhosts.list_hosts(_data_dir(data_dir))
    items: list[dict[str, Any]] = [
        {
            "name": h.name,
            "address": h.address,
            "namespace": h.namespace,
            "agent_pid": h.pid,
            "running": h.running,
            "zone": h.zone,
            "labels": dict(h.labels),
            "data_dir": str(h.data_dir),
        }
        for h in hosts
    ]
    output.print_list(
        out,
        items,
        False,
        ["NAME", "ADDRESS", "NAMESPACE", "AGENT", "ZONE", "LABELS", "DATA DIR"],
        (
            [
                i["name"],
                i["address"],
                i["namespace"],
                f"running (pid {i['agent_pid']})" if i["running"] else "stopped",
                i["zone"],
                ",".join(f"{k}={v}" for k, v in i["labels"].items()),
                i["data_dir"],
            ]
            for i in items
        ),
        key="name",
        wide_only=("DATA DIR",),
    )
