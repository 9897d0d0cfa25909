"""`cellplane project ls|create|update|rm`: the projects of the caller's tenant.

Registered on the root app by `cellplane.cli.main`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(help="Manage projects.", no_args_is_help=True)


@app.command("ls")
def ls(quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List projects."""
    with output.session() as client:
        projects = list(client.iter_projects())
    output.print_list(
        out,
        projects,
        quiet,
        ["NAME", "ID", "TENANT"],
        ([p.get("name"), p.get("id"), p.get("tenant")] for p in projects),
    )


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Project name (a DNS label).")],
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a project."""
    with output.session() as client:
        project = client.create_project(name)
    if output.print_id(quiet, project):
        return
    if output.is_json(out):
        output.print_json(project)
    else:
        output.out_console.print(
            f"project {output.escape(str(project.get('name')))} ({project.get('id')}) created"
        )


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Project name or id.")],
    isolation: Annotated[
        str,
        typer.Option(
            help="Minimum isolation class of its cells: sandbox, or standard (no policy)."
        ),
    ],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Set a project's policy: the weakest isolation class its cells may use."""
    from cellplane.cli.tenants import print_policy_update

    with output.session() as client:
        data = client.update_project(name, isolation=isolation)
    print_policy_update(data, "project", out)


@app.command("rm")
def rm(name: Annotated[str, typer.Argument(help="Project name or id.")]) -> None:
    """Delete an empty project (refused, naming them, while it has cells, volumes, clusters,
    services, networks or a Docker endpoint)."""
    with output.session() as client:
        client.delete_project(name)
    output.say(f"project {output.escape(name)} deleted")
