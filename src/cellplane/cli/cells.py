"""`cellplane cell ...`: run, list, inspect, control and remove cells.

Registered on the root app by `cellplane.cli.main`. The option parsers
(`parse_port`, `parse_volume`, `parse_restart`, ...) are pure functions that
turn docker-like flags into the CellCreate fields of docs/api.md; a bad flag
is a usage error (exit 2) before anything is sent. Cells are named on the
command line; `resolve_cell` turns a name into an id through
`GET /v1/projects/{project}/cells?name=` (an argument starting with `cel-` is
taken as an id as is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from cellplane.cli import output, tasks
from cellplane.cli.cell_args import (
    LabelOpt,
    Placement,
    parse_env,
    parse_memory,
    parse_port,
    parse_restart,
    parse_selector,
    parse_volume,
)

if TYPE_CHECKING:
    from cellplane.client import Client

__all__ = [
    "app",
    "parse_env",
    "parse_memory",
    "parse_port",
    "parse_restart",
    "parse_volume",
    "resolve_cell",
]

app = typer.Typer(help="Run and manage cells (isolated container workloads).", no_args_is_help=True)


def resolve_cell(client: Client, project: str, ref: str) -> str:
    """The id of the cell named `ref` in `project` (ids pass through)."""
    if ref.startswith("cel-"):
        return ref
    cell = client.find_cell(project, ref)
    if cell is None:
        from cellplane.client import CellplaneError

        raise CellplaneError("Not found", f"no cell named {ref!r} in project {project!r}")
    return str(cell["id"])


def _host_text(cell: dict[str, Any]) -> str | None:
    """The host by name, with its id: `node-a (hst-...)`."""
    if not cell.get("host"):
        return None
    name = cell.get("host_name")
    return f"{name} ({cell['host']})" if name else str(cell["host"])


def _ports_text(cell: dict[str, Any]) -> str:
    return ", ".join(
        f"{p.get('host_port')}->{p.get('container_port')}/{p.get('protocol', 'tcp')}"
        for p in cell.get("ports") or []
    )


def _finish(
    client: Client,
    task: dict[str, Any],
    out: output.OutputFormat,
    detach: bool,
    done: str,
    *,
    show_cell: bool = True,
    quiet: bool = False,
) -> None:
    """Wait for a cell task (unless detached), print the result, exit 1 on ERROR. `quiet`: the
    cell's id alone on stdout (and no live display)."""
    as_json = output.is_json(out)
    if detach:
        if quiet:
            output.print_id(quiet, task.get("entity") or {})
        elif as_json:
            output.print_json(task)
        else:
            tasks.print_started(task)
        return
    try:
        final = tasks.follow_task(client, task, quiet=as_json or quiet)
    except KeyboardInterrupt:
        # Only the waiting stops; the operation itself carries on in the server.
        output.err_console.print(
            f"stopped waiting; follow it with: cellplane task watch {task.get('id')}"
        )
        raise typer.Exit(130) from None
    if final.get("state") == "ERROR":
        if as_json:
            output.print_json(final)
        tasks.report_task_error(final)
        raise typer.Exit(1)
    entity = final.get("entity") or {}
    if output.print_id(quiet, entity):
        return
    cell: dict[str, Any] | None = None
    if show_cell and entity.get("kind") == "cell" and entity.get("id"):
        cell = client.get_cell(str(entity["id"]))
    if as_json:
        output.print_json(cell if cell is not None else final)
        return
    if cell is None:
        output.out_console.print(f"{done} {entity.get('id', '')}".strip())
        return
    where = f" at {cell['address']}" if cell.get("address") else ""
    output.out_console.print(
        f"cell {output.escape(str(cell.get('name')))} ({cell.get('id')}) "
        f"{str(cell.get('state', '')).lower()}{where}"
    )


Detach = Annotated[bool, typer.Option("--detach", "-d", help="Do not wait for the task.")]
CellRef = Annotated[str, typer.Argument(help="Cell name, or id (cel-...).")]


@app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="Name of the new cell (a DNS label).")],
    image: Annotated[str, typer.Option("--image", "-i", help="Image name or id.")],
    command: Annotated[
        list[str] | None, typer.Argument(help="Command and arguments, after `--`.")
    ] = None,
    flavor: Annotated[str | None, typer.Option(help="Flavor name (e.g. SMALL).")] = None,
    cpu: Annotated[
        float | None,
        typer.Option(
            help="CPUs, instead of a flavor; alone, the memory is the nearest flavor's "
            "(the smallest with at least this many CPUs).",
            min=0.01,
        ),
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory",
            "-m",
            help="Memory (512M, 2G), instead of a flavor; alone, the CPUs are the nearest "
            "flavor's (the smallest with at least this much memory).",
        ),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Environment KEY=VALUE (repeat).")
    ] = None,
    label: LabelOpt = None,
    publish: Annotated[
        list[str] | None,
        typer.Option("--publish", "-p", help="Publish HOST:CONTAINER\\[/udp] (repeat)."),
    ] = None,
    volume: Annotated[
        list[str] | None, typer.Option("--volume", "-v", help="Mount VOLUME:/path\\[:ro] (repeat).")
    ] = None,
    restart: Annotated[
        str, typer.Option(help="Restart policy: never, on-failure\\[:N], always.")
    ] = "never",
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only", help="Read-only root file system (volumes, /tmp and /run stay writable)."
        ),
    ] = False,
    pids_limit: Annotated[
        int | None,
        typer.Option(
            "--pids-limit", min=16, help="Most processes and threads (default: the host's, 4096)."
        ),
    ] = None,
    placement: Annotated[
        Placement | None,
        typer.Option(help="spread (default: the least used host) or binpack (the fullest)."),
    ] = None,
    affinity: Annotated[
        list[str] | None,
        typer.Option(help="Run with cells carrying KEY=VALUE\\[,KEY=VALUE] (repeat)."),
    ] = None,
    anti_affinity: Annotated[
        list[str] | None,
        typer.Option(help="Run away from cells carrying KEY=VALUE\\[,KEY=VALUE] (repeat)."),
    ] = None,
    soft: Annotated[
        bool, typer.Option(help="The (anti-)affinity is a preference, not a requirement.")
    ] = False,
    isolation: Annotated[
        str | None,
        typer.Option(help="standard, or sandbox (gVisor); default: the tenant's minimum."),
    ] = None,
    network: Annotated[
        list[str] | None,
        typer.Option(
            help="A project network it joins (`cellplane network ls`; default: its own); "
            "repeat for several, the first one first."
        ),
    ] = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the new cell's id.")
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create and start a cell, and wait until it runs.

    Size: --flavor (default SMALL), or --cpu and/or --memory (one alone takes the other from the
    nearest flavor; see `cellplane flavor ls`). A cell no host can take is refused at once,
    saying what the largest free host has."""
    if flavor is not None and (cpu is not None or memory is not None):
        raise typer.BadParameter(
            "use --flavor or --cpu/--memory, not both", param_hint="'--flavor'"
        )
    restart_policy = parse_restart(restart)
    spec: dict[str, Any] = {
        "flavor": flavor,
        "cpu": cpu,
        "memory_mb": None if memory is None else parse_memory(memory),
        "command": command or None,
        "env": parse_env(env, "'--env'"),
        "labels": parse_env(label, "'--label'"),
        "ports": [parse_port(p) for p in publish or []],
        "volumes": [parse_volume(v) for v in volume or []],
        "restart": restart_policy,
        "read_only": read_only,
        "pids_limit": pids_limit,
        "placement": placement.value if placement else None,
        "affinity": [
            {"selector": parse_selector(sel, opt), "anti": anti, "soft": soft}
            for sels, opt, anti in (
                (affinity, "'--affinity'", False),
                (anti_affinity, "'--anti-affinity'", True),
            )
            for sel in sels or []
        ]
        or None,
        "isolation": isolation,
        # One network: `network`, as before; several: `networks`, the first one first.
        "network": network[0] if network and len(network) == 1 else None,
        "networks": network if network and len(network) > 1 else None,
    }
    if soft and not (affinity or anti_affinity):
        raise typer.BadParameter(
            "--soft needs --affinity or --anti-affinity", param_hint="'--soft'"
        )
    with output.session() as client:
        task = client.create_cell(project, name, image, **spec)
        _finish(client, task, out, detach, "created", quiet=quiet)


@app.command("ls")
def ls(
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Only cells with KEY=VALUE (repeat).")
    ] = None,
    state: Annotated[str | None, typer.Option(help="Only cells in this state.")] = None,
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the cells of a project."""
    labels = parse_env(label, "'--label'")
    with output.session() as client:
        cells = list(client.iter_cells(project, labels=labels or None, state=state))
    output.print_list(
        out,
        cells,
        quiet,
        ["NAME", "ID", "STATE", "IMAGE", "HOST", "ADDRESS", "PORTS", "AGE", "HOST ID", "SIZE"],
        (
            [
                c.get("name"),
                c.get("id"),
                c.get("state"),
                c.get("image"),
                c.get("host_name") or c.get("host"),
                c.get("address"),
                _ports_text(c),
                output.age(c.get("created_at")),
                c.get("host"),
                f"{c.get('cpu')} cpu, {c.get('memory_mb')} MB",
            ]
            for c in cells
        ),
        wide_only=("HOST ID", "SIZE"),
    )


@app.command("show")
def show(
    cell: CellRef,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show one cell, with its recent events."""
    with output.session() as client:
        data = client.get_cell(resolve_cell(client, project, cell))
    if output.is_json(out):
        output.print_json(data)
        return
    restart = data.get("restart") or {}
    restart_text = str(restart.get("policy", "-"))
    if restart.get("max_retries") is not None:
        restart_text += f":{restart['max_retries']}"
    size = f"{data.get('cpu')} cpu, {data.get('memory_mb')} MB, {data.get('disk_gb')} GB"
    fields = [
        ("name", data.get("name")),
        ("id", data.get("id")),
        ("project", data.get("project")),
        ("state", f"{data.get('state')} (desired {data.get('desired_state')})"),
        ("image", data.get("image")),
        ("size", f"{data.get('flavor')}: {size}" if data.get("flavor") else size),
        ("command", " ".join(data.get("command") or []) or None),
        ("host", _host_text(data)),
        ("address", data.get("address")),
        (
            "networks",
            ", ".join(
                f"{n.get('name')} {n.get('address') or '-'}" for n in data.get("networks") or []
            ),
        ),
        ("ports", _ports_text(data)),
        (
            "volumes",
            ", ".join(
                f"{v.get('host_path') or v.get('volume')}:{v.get('path')}"
                f"{':ro' if v.get('read_only') else ''}"
                for v in data.get("volumes") or []
            ),
        ),
        ("env", ", ".join(f"{k}={v}" for k, v in (data.get("env") or {}).items())),
        ("labels", ", ".join(f"{k}={v}" for k, v in (data.get("labels") or {}).items())),
        ("restart", f"{restart_text}, {data.get('restarts', 0)} restarts"),
        ("isolation", data.get("isolation")),
        ("exit code", data.get("exit_code")),
        ("created", data.get("created_at")),
    ]
    output.print_table(["FIELD", "VALUE"], fields)
    events = data.get("events") or []
    if events:
        output.print_table(
            ["AT", "EVENT", "MESSAGE"],
            ([e.get("at"), e.get("type"), e.get("message")] for e in events[-10:]),
            title="events",
        )


@app.command("logs")
def logs(
    cell: CellRef,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.", min=0)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming.")] = False,
    project: output.ProjectOpt = "default",
) -> None:
    """Print a cell's output."""
    import sys

    with output.session() as client:
        cell_id = resolve_cell(client, project, cell)
        try:
            for line in client.cell_logs(cell_id, tail=tail, follow=follow):
                sys.stdout.write(line + "\n")
                if follow:
                    sys.stdout.flush()
        except KeyboardInterrupt:
            # Ctrl-C is how one stops following; it is not a failure.
            pass


class _ExecCommand(TyperCommand):
    """`cell exec`'s parsing. With `--`, cellplane's options may stand anywhere before it, as
    kubectl's (`exec -it web -- sh`, `exec spy --project other -- ping x`); without `--`,
    everything after the cell is the command, its options included, as docker's
    (`exec web ls -la`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's own click.Context
        ctx.allow_interspersed_args = "--" in args
        return super().parse_args(ctx, args)


@app.command(
    "exec",
    cls=_ExecCommand,
    # Options cellplane does not know belong to the command (`exec web ls -la`).
    context_settings={"ignore_unknown_options": True},
)
def exec_(
    cell: CellRef,
    command: Annotated[
        list[str], typer.Argument(help="Command and arguments, after the cell (or after `--`).")
    ],
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="Forward stdin to the command (closed at EOF). Without -i stdin is not "
            "forwarded, even when piped (as with docker exec).",
        ),
    ] = False,
    tty: Annotated[
        bool,
        typer.Option(
            "--tty",
            "-t",
            help="Give the command a terminal: yours goes raw (keys, Ctrl-C included, go to "
            "the command) and its window size follows yours.",
        ),
    ] = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Run a command in a running cell, streaming its output; exit with the command's exit
    code (127 if it is not found, 126 if it cannot be run).

    `cellplane cell exec -it web -- sh`, `echo 'echo hi' | cellplane cell exec -i web -- sh`.
    Options go before `--`; without `--`, everything after the cell is the command.
    """
    from cellplane.cli import exec_term

    if out is output.OutputFormat.json and (interactive or tty):
        raise typer.BadParameter("-o json collects the output: it does not go with -i or -t")
    if interactive and tty and not exec_term.stdin_is_terminal():
        output.fail("the input device is not a TTY", "drop -t to pipe stdin: `exec -i`", code=1)
    with output.session() as client:
        cell_id = resolve_cell(client, project, cell)
        if out is output.OutputFormat.json:
            result = client.exec_cell(cell_id, command)
            output.print_json(result)
            code = result.get("exit_code")
            raise typer.Exit(code if isinstance(code, int) else 1)
        size = exec_term.terminal_size() if tty else None
        session = client.exec_stream(cell_id, command, stdin=interactive, tty=tty, size=size)
        try:
            code, error = exec_term.run(session, forward_stdin=interactive, tty=tty)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            session.close()
    if error:
        output.err_console.print(f"[red]{output.escape(error)}[/]")
    raise typer.Exit(code if code is not None else 1)


GraceOpt = Annotated[
    float | None, typer.Option("--timeout", "-t", help="Seconds before SIGKILL.", min=0)
]


@app.command("stop")
def stop(
    cell: CellRef,
    timeout: GraceOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Stop a cell (SIGTERM, then SIGKILL after the timeout)."""
    with output.session() as client:
        task = client.stop_cell(resolve_cell(client, project, cell), timeout=timeout)
        _finish(client, task, out, detach, "stopped")


@app.command("start")
def start(
    cell: CellRef,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Start a stopped cell."""
    with output.session() as client:
        task = client.start_cell(resolve_cell(client, project, cell))
        _finish(client, task, out, detach, "started")


@app.command("restart")
def restart_(
    cell: CellRef,
    timeout: GraceOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Stop and start a cell again."""
    with output.session() as client:
        task = client.restart_cell(resolve_cell(client, project, cell), timeout=timeout)
        _finish(client, task, out, detach, "restarted")


@app.command("move")
def move(
    cell: CellRef,
    to: Annotated[str, typer.Option("--to", help="The host to move it to (name or id).")],
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Move a cell to another host: created there anew, its old container removed."""
    with output.session() as client:
        task = client.move_cell(resolve_cell(client, project, cell), to)
        _finish(client, task, out, detach, "moved")


@app.command("rm")
def rm(
    cell: CellRef,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Delete a cell (its volumes stay)."""
    with output.session() as client:
        task = client.delete_cell(resolve_cell(client, project, cell))
        _finish(client, task, out, detach, "deleted", show_cell=False)
