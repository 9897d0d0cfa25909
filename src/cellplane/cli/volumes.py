"""`cellplane volume create|ls|rm`: persistent volumes of a project.

Registered on the root app by `cellplane.cli.main`. Volumes are named on the
command line; a name resolves to an id through the project's volume list
(an argument starting with `vol-` is taken as an id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cellplane.cli import output
from cellplane.cli.cell_args import LabelOpt, parse_env

if TYPE_CHECKING:
    from cellplane.client import Client

__all__ = ["app", "resolve_volume"]

app = typer.Typer(help="Manage persistent volumes.", no_args_is_help=True)


def resolve_volume(client: Client, project: str, ref: str) -> str:
    """The id of the volume named `ref` in `project` (ids pass through)."""
    if ref.startswith("vol-"):
        return ref
    volume = client.find_volume(project, ref)
    if volume is None:
        from cellplane.client import CellplaneError

        raise CellplaneError("Not found", f"no volume named {ref!r} in project {project!r}")
    return str(volume["id"])


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Volume name (a DNS label).")],
    size: Annotated[int, typer.Option("--size", help="Size in GB.", min=1)] = 1,
    label: LabelOpt = None,
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a volume."""
    labels = parse_env(label, "'--label'")
    with output.session() as client:
        volume = client.create_volume(project, name, size_gb=size, labels=labels or None)
    if output.print_id(quiet, volume):
        return
    if output.is_json(out):
        output.print_json(volume)
    else:
        output.out_console.print(
            f"volume {output.escape(str(volume.get('name')))} ({volume.get('id')}) created, "
            f"{volume.get('size_gb')} GB"
        )


@app.command("ls")
def ls(
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the volumes of a project."""
    with output.session() as client:
        volumes = list(client.iter_volumes(project))
    output.print_list(
        out,
        volumes,
        quiet,
        ["NAME", "ID", "SIZE", "HOST", "ATTACHED TO", "AGE", "HOST ID", "ATTACHED IDS"],
        (
            [
                v.get("name"),
                v.get("id"),
                f"{v.get('size_gb')} GB",
                v.get("host_name") or v.get("host"),
                ", ".join(v.get("attached_names") or v.get("attached_to") or []),
                output.age(v.get("created_at")),
                v.get("host"),
                ", ".join(v.get("attached_to") or []),
            ]
            for v in volumes
        ),
        wide_only=("HOST ID", "ATTACHED IDS"),
    )


@app.command("rm")
def rm(
    volume: Annotated[str, typer.Argument(help="Volume name, or id (vol-...).")],
    project: output.ProjectOpt = "default",
) -> None:
    """Delete a volume (refused while a cell uses it)."""
    with output.session() as client:
        volume_id = resolve_volume(client, project, volume)
        client.delete_volume(volume_id)
    output.out_console.print(f"volume {output.escape(volume)} deleted")
