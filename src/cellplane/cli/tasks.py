"""`cellplane task show|watch`, and the live task display every waiting command uses.

`follow_task` is called by the cell commands (run, start, stop, restart, rm)
after the API answered 202: it follows the task's SSE stream and redraws its
steps on stderr with Rich, then returns the final task so that the caller can
choose its exit code (0 when COMPLETED, 1 on ERROR).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cellplane.client import Client

__all__ = ["app", "follow_task", "render_task", "report_task_error"]

app = typer.Typer(help="Inspect asynchronous operations.", no_args_is_help=True)

_STATE_STYLE = {
    "QUEUED": ("·", "dim"),
    "STARTED": ("…", "yellow"),
    "COMPLETED": ("✓", "green"),
    "ERROR": ("✗", "red"),
    "SKIPPED": ("-", "dim"),
}


def render_task(task: dict[str, Any]) -> RenderableType:
    """A table of the task's steps with their states."""
    from rich import box
    from rich.table import Table

    entity = task.get("entity") or {}
    title = f"{task.get('kind', 'TASK')} {entity.get('id', '')}".strip()
    table = Table(
        box=box.SIMPLE,
        show_header=False,
        title=f"{title} [dim]{task.get('id', '')} {task.get('progress', 0)}%[/]",
        title_justify="left",
    )
    table.add_column(width=1)
    table.add_column()
    table.add_column()
    for step in task.get("steps") or []:
        state = str(step.get("state", "QUEUED"))
        icon, style = _STATE_STYLE.get(state, ("?", ""))
        error = step.get("error")
        table.add_row(
            f"[{style}]{icon}[/]",
            str(step.get("name", "")),
            f"[{style}]{state.lower()}[/]"
            + (f" [red]{output.escape(str(error))}[/]" if error else ""),
        )
    return table


def report_task_error(task: dict[str, Any]) -> None:
    """Print why a task failed, in red on stderr."""
    output.err_console.print(
        f"[bold red]Error:[/] [red]task {task.get('id')} ({task.get('kind')}) failed: "
        f"{output.escape(str(task.get('error') or 'no reason given'))}[/]"
    )


def follow_task(client: Client, task: dict[str, Any], *, quiet: bool = False) -> dict[str, Any]:
    """Wait for a task, showing its steps live on stderr unless `quiet`; return the final task."""
    from cellplane.client import TERMINAL_TASK_STATES

    if task.get("state") in TERMINAL_TASK_STATES:
        final = task
        if not quiet:
            output.err_console.print(render_task(task))
    elif quiet:
        final = client.wait_task(task["id"], timeout=None)
    else:
        from rich.live import Live

        final = task
        with Live(
            render_task(task), console=output.err_console, refresh_per_second=10, transient=False
        ) as live:
            for update in client.watch_task(task["id"]):
                final = update
                live.update(render_task(update))
    return final


TaskId = Annotated[str, typer.Argument(help="Task id (tsk-...).")]


@app.command("show")
def show(task_id: TaskId, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show a task and its steps."""
    with output.session() as client:
        task = client.get_task(task_id)
    if out is output.OutputFormat.json:
        output.print_json(task)
    else:
        output.out_console.print(render_task(task))
        if task.get("error"):
            output.out_console.print(f"[red]error: {output.escape(str(task['error']))}[/]")


@app.command("watch")
def watch(task_id: TaskId, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Follow a task until it finishes; exit 1 if it fails."""
    with output.session() as client:
        task = client.get_task(task_id)
        final = follow_task(client, task, quiet=out is output.OutputFormat.json)
    if out is output.OutputFormat.json:
        output.print_json(final)
    if final.get("state") == "ERROR":
        report_task_error(final)
        raise typer.Exit(1)
