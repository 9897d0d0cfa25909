"""`cellplane image import|ls|rm`: base filesystems cells are cloned from.

Registered on the root app by `cellplane.cli.main`. `import` streams a
docker-archive or OCI tarball to `POST /v1/images?name=` with a progress bar,
so multi-gigabyte images never sit in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellplane.cli import output

__all__ = ["app", "human_size"]

app = typer.Typer(help="Manage images.", no_args_is_help=True)


def human_size(size: object) -> str:
    """Bytes as '12.3 MB' (powers of 1024, like `docker images`)."""
    if not isinstance(size, int | float):
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="docker-archive or OCI tarball (`docker save` / `podman save`).",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Image name.")],
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Upload an image tarball."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    size = file.stat().st_size
    with (
        output.session() as client,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=output.err_console,
            transient=True,
            disable=output.is_json(out) or quiet,
        ) as progress,
    ):
        bar = progress.add_task(f"uploading {file.name}", total=size)

        def advance(sent: int) -> None:
            # A retry re-sends from the start; the bar must follow.
            done = progress.tasks[0].completed
            progress.update(bar, completed=(done + sent) if done + sent <= size else sent)

        image = client.upload_image(name, file, progress=advance)
    if output.print_id(quiet, image):
        return
    if output.is_json(out):
        output.print_json(image)
    else:
        output.out_console.print(
            f"image {output.escape(str(image.get('name')))} ({image.get('id')}) imported, "
            f"{human_size(image.get('size_bytes'))}"
        )


@app.command("ls")
def ls(quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List images."""
    with output.session() as client:
        images = list(client.iter_images())
    output.print_list(
        out,
        images,
        quiet,
        ["NAME", "ID", "KIND", "SIZE", "AGE"],
        (
            [
                i.get("name"),
                i.get("id"),
                i.get("kind"),
                human_size(i.get("size_bytes")),
                output.age(i.get("created_at")),
            ]
            for i in images
        ),
    )


@app.command("rm")
def rm(image: Annotated[str, typer.Argument(help="Image name or id.")]) -> None:
    """Delete an image (refused while a cell uses it)."""
    with output.session() as client:
        client.delete_image(image)
    output.out_console.print(f"image {output.escape(image)} deleted")
