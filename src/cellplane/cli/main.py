"""The `cellplane` command: the root Typer app (console script `cellplane.cli.main:app`).

Only wires the noun modules together; each noun lives in its own module, and
the daemon commands (`up`, `server`, `agent`) are attached by
`cellplane.cli.daemons.register`. Modules import httpx and most of Rich
lazily, inside commands, so `cellplane --help` stays quick.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cellplane.cli import (
    admin,
    audit,
    cells,
    certs,
    clients,
    clusters,
    daemons,
    devhosts,
    endpoints,
    flavors,
    groups,
    hosts,
    images,
    login,
    networks,
    output,
    projects,
    quotas,
    roles,
    services,
    tasks,
    tenants,
    users,
    volumes,
)
from cellplane.cli.verbs import conventional

__all__ = ["ENVIRONMENT", "app"]

ENVIRONMENT = (
    "Environment: CELLPLANE_SERVER (the API URL, e.g. https://127.0.0.1:7400), "
    "CELLPLANE_TOKEN (a bearer token; wins over a login session), CELLPLANE_CA_CERT (the CA "
    "bundle that verifies the server), CELLPLANE_CONFIG (the configuration file, default "
    "~/.config/cellplane/config.json), CELLPLANE_PROJECT (the default --project). Each overrides "
    "the configuration file that `cellplane up` and `cellplane login` write."
)

app = typer.Typer(
    name="cellplane",
    help="Cellplane: cells, clusters and identity on your own machines.",
    epilog=ENVIRONMENT,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from cellplane import __version__

        typer.echo(f"cellplane {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Cellplane: cells, clusters and identity on your own machines."""
    output.reset_format()  # a command without -o prints its errors for people


app.add_typer(conventional(cells.app), name="cell")
app.add_typer(conventional(clusters.app), name="cluster")
app.add_typer(conventional(services.app), name="service")
app.add_typer(conventional(volumes.app), name="volume")
app.add_typer(conventional(networks.app), name="network")
app.add_typer(conventional(images.app), name="image")
app.add_typer(conventional(flavors.app), name="flavor")
app.add_typer(conventional(hosts.app), name="host")
app.add_typer(conventional(projects.app), name="project")
app.add_typer(conventional(tasks.app), name="task")
daemons.register(app)
app.add_typer(devhosts.app, name="dev")
app.command("login")(login.login)
app.command("logout")(login.logout)
app.command("whoami")(login.whoami)
app.add_typer(conventional(tenants.app), name="tenant")
app.add_typer(conventional(users.app), name="user")
app.add_typer(conventional(groups.app), name="group")
app.add_typer(conventional(clients.app), name="client")
app.add_typer(conventional(roles.app), name="role")
app.add_typer(conventional(quotas.app), name="quota")
app.add_typer(conventional(certs.app), name="cert")
app.add_typer(conventional(audit.app), name="audit")
app.add_typer(conventional(endpoints.app), name="endpoint")
app.add_typer(conventional(admin.app), name="admin")

if __name__ == "__main__":
    app()
