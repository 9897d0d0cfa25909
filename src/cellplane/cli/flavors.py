"""`cellplane flavor ls`: the named cell sizes.

Registered on the root app by `cellplane.cli.main`.
"""

from __future__ import annotations

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(help="Named cell sizes.", no_args_is_help=True)


@app.command("ls")
def ls(quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List flavors."""
    with output.session() as client:
        flavors = list(client.iter_flavors())
    output.print_list(
        out,
        flavors,
        quiet,
        ["NAME", "CPU", "MEMORY", "DISK"],
        (
            [f.get("name"), f.get("cpu"), f"{f.get('memory_mb')} MB", f"{f.get('disk_gb')} GB"]
            for f in flavors
        ),
        key="name",
    )
