"""`cellplane task ls|show|watch`, and the live task display every waiting command uses.

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

__all__ = [
    "app",
    "follow_task",
    "print_started",
    "render_task",
    "report_task_error",
    "task_header",
]

app = typer.Typer(
    help="Inspect asynchronous operations: every command that changes a cell or cluster starts "
    "a task and prints its id (tsk-...).",
    no_args_is_help=True,
)

_STATE_STYLE = {
    "QUEUED": ("·", "dim"),
    "STARTED": ("…", "yellow"),
    "COMPLETED": ("✓", "green"),
    "ERROR": ("✗", "red"),
    "SKIPPED": ("-", "dim"),
}


def task_header(task: dict[str, Any]) -> str:
    """One line: what the task does, to what (by name), its id and progress:
    `create cell web  tsk-0mx5...  40%`."""
    entity = task.get("entity") or {}
    what = str(task.get("kind", "TASK")).lower().replace("_", " ")
    target = entity.get("name") or entity.get("id")
    head = f"{what} {target}" if target else what
    return f"{head}  {task.get('id', '')}  {task.get('progress', 0)}%"


def render_task(task: dict[str, Any], elapsed: dict[str, float] | None = None) -> RenderableType:
    """The task's one-line header (never wrapped) and its steps with their states; a step under
    way shows a spinner and, from `elapsed` (step name -> seconds), how long it has been going
    (a stop waits for the cell's grace period before SIGKILL)."""
    from rich import box
    from rich.console import Group
    from rich.spinner import Spinner
    from rich.table import Table
    from rich.text import Text

    header = Text(task_header(task), style="bold", no_wrap=True, overflow="ellipsis")
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(width=1)
    table.add_column()
    table.add_column()
    for step in task.get("steps") or []:
        state = str(step.get("state", "QUEUED"))
        name = str(step.get("name", ""))
        icon, style = _STATE_STYLE.get(state, ("?", ""))
        error = step.get("error")
        text = f"[{style}]{state.lower()}[/]"
        if state == "STARTED" and elapsed is not None and name in elapsed:
            text += f" [dim]{elapsed[name]:.0f}s[/]"
            if name == "STOP":
                text += " [dim](SIGTERM sent, SIGKILL at the stop timeout)[/]"
        if error:
            text += f" [red]{output.escape(str(error))}[/]"
        first: RenderableType = (
            Spinner("dots", style=style) if state == "STARTED" and elapsed is not None else
            Text.from_markup(f"[{style}]{icon}[/]")
        )  # fmt: skip
        table.add_row(first, name, text)
    return Group(header, table)


class _LiveTask:
    """What `follow_task` hands Rich's Live: re-rendered on every refresh, so the timer of a
    step under way moves even while the server has nothing new to say."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        self._since: dict[str, float] = {}

    def update(self, task: dict[str, Any]) -> None:
        self.task = task

    def __rich__(self) -> RenderableType:
        import time

        now = time.monotonic()
        elapsed: dict[str, float] = {}
        for step in self.task.get("steps") or []:
            name = str(step.get("name", ""))
            if step.get("state") == "STARTED":
                elapsed[name] = now - self._since.setdefault(name, now)
        return render_task(self.task, elapsed)


def report_task_error(task: dict[str, Any]) -> None:
    """Print why a task failed, in red on stderr."""
    output.err_console.print(
        f"[bold red]Error:[/] [red]task {task.get('id')} ({task.get('kind')}) failed: "
        f"{output.escape(str(task.get('error') or 'no reason given'))}[/]\n"
        f"[dim]see it with: cellplane task show {task.get('id')}[/]"
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
        view = _LiveTask(task)
        with Live(view, console=output.err_console, refresh_per_second=10, transient=False):
            for update in client.watch_task(task["id"]):
                final = update
                view.update(update)
            view.update(final)
    return final


def print_started(task: dict[str, Any]) -> None:
    """A detached command's answer: the task on stdout, how to follow it on stderr."""
    output.out_console.print(f"task {task.get('id')} {str(task.get('state')).lower()}")
    output.err_console.print(
        f"[dim]follow it with: cellplane task watch {task.get('id')} "
        f"(or: cellplane task show {task.get('id')}; cellplane task ls)[/]"
    )


TaskId = Annotated[
    str,
    typer.Argument(
        help="Task id (tsk-...): printed by the command that started it; see `task ls`."
    ),
]


@app.command("ls")
def ls(
    limit: Annotated[int, typer.Option("--limit", help="At most this many.", min=1, max=200)] = 20,
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the project's recent tasks, newest first."""
    with output.session() as client:
        items = client.list_tasks(project, limit=limit)
    output.print_list(
        out,
        items,
        quiet,
        ["ID", "KIND", "TARGET", "STATE", "PROGRESS", "AGE", "TARGET ID", "ERROR"],
        (
            [
                t.get("id"),
                t.get("kind"),
                (t.get("entity") or {}).get("name") or (t.get("entity") or {}).get("id"),
                t.get("state"),
                f"{t.get('progress', 0)}%",
                output.age(t.get("created_at")),
                (t.get("entity") or {}).get("id"),
                t.get("error"),
            ]
            for t in items
        ),
        wide_only=("TARGET ID", "ERROR"),
    )


@app.command("show")
def show(task_id: TaskId, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show a task and its steps."""
    with output.session() as client:
        task = client.get_task(task_id)
    if output.is_json(out):
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
        final = follow_task(client, task, quiet=output.is_json(out))
    if output.is_json(out):
        output.print_json(final)
    if final.get("state") == "ERROR":
        report_task_error(final)
        raise typer.Exit(1)
