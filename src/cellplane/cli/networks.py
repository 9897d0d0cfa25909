"""`cellplane network create|ls|rm|connect|disconnect`: networks of a project.

Registered on the root app by `cellplane.cli.main`. Every project has its own network, called
"default"; cells join another one with `cellplane cell create ... --network NAME`. Cells of
different networks do not reach each other (docs/networks.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cellplane.cli import output
from cellplane.cli.cell_args import LabelOpt, parse_env
from cellplane.cli.cells import resolve_cell

__all__ = ["app"]

app = typer.Typer(help="Manage project networks.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Network name (a DNS label).")],
    label: LabelOpt = None,
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a network in a project."""
    labels = parse_env(label, "'--label'")
    with output.session() as client:
        net = client.create_network(project, name, labels=labels or None)
    if output.print_id(quiet, net):
        return
    if output.is_json(out):
        output.print_json(net)
    else:
        output.out_console.print(
            f"network {output.escape(str(net.get('name')))} ({net.get('id')}) created, "
            f"subnet {net.get('subnet')}, VXLAN id {net.get('vni')}"
        )


@app.command("ls")
def ls(
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the networks of a project."""
    with output.session() as client:
        nets = client.list_networks(project)["items"]
    output.print_list(
        out,
        nets,
        quiet,
        ["NAME", "ID", "SUBNET", "VNI", "CELLS", "AGE", "ENGINE NAME"],
        (
            [
                n.get("name"),
                n.get("id"),
                n.get("subnet"),
                n.get("vni"),
                n.get("cells"),
                output.age(n.get("created_at")),
                n.get("engine_name"),
            ]
            for n in nets
        ),
        wide_only=("ENGINE NAME",),
    )


@app.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="Network name.")],
    project: output.ProjectOpt = "default",
) -> None:
    """Delete a network (refused while a cell uses it; the default one goes with its project)."""
    with output.session() as client:
        client.delete_network(project, name)
    output.out_console.print(f"network {output.escape(name)} deleted")


@app.command("connect")
def connect(
    name: Annotated[str, typer.Argument(help="Network name.")],
    cell: Annotated[str, typer.Argument(help="Cell name or id.")],
    project: output.ProjectOpt = "default",
) -> None:
    """Put a cell on one more network of its project (a running cell at once)."""
    with output.session() as client:
        data = client.connect_cell_network(resolve_cell(client, project, cell), name)
    output.out_console.print(_networks_text(data))


@app.command("disconnect")
def disconnect(
    name: Annotated[str, typer.Argument(help="Network name.")],
    cell: Annotated[str, typer.Argument(help="Cell name or id.")],
    project: output.ProjectOpt = "default",
) -> None:
    """Take a cell off one of its networks (a cell keeps at least one)."""
    with output.session() as client:
        data = client.disconnect_cell_network(resolve_cell(client, project, cell), name)
    output.out_console.print(_networks_text(data))


def _networks_text(cell: dict[str, Any]) -> str:
    nets = cell.get("networks") or []
    listed = ", ".join(
        f"{n.get('name')} {n.get('address') or '-'}" for n in nets if isinstance(n, dict)
    )
    return f"cell {output.escape(str(cell.get('name')))} on networks: {output.escape(listed)}"
