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
    cells,
    clusters,
    daemons,
    flavors,
    hosts,
    identity,
    images,
    projects,
    tasks,
    volumes,
)

__all__ = ["app"]

app = typer.Typer(
    name="cellplane",
    help="Cellplane: cells, clusters and identity on your own machines.",
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


app.add_typer(cells.app, name="cell")
app.add_typer(clusters.app, name="cluster")
app.add_typer(volumes.app, name="volume")
app.add_typer(images.app, name="image")
app.add_typer(flavors.app, name="flavor")
app.add_typer(hosts.app, name="host")
app.add_typer(projects.app, name="project")
app.add_typer(tasks.app, name="task")
daemons.register(app)
identity.register(app)  # login, logout, whoami, tenant, user, group, client, role, quota, ...

if __name__ == "__main__":
    app()
