"""`cellplane service ...`: N identical cells from one template (docs/services.md).

Registered on the root app by `cellplane.cli.main`. `create`, `scale`, `update` and `rm` wait for
their task with its steps and progress live on stderr (the CELLS step says how many cells are
ready) unless `-d`; they exit 1 when the task fails, 130 when interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cellplane.cli import output
from cellplane.cli.cell_args import parse_env, parse_memory, parse_port, parse_restart

if TYPE_CHECKING:
    from cellplane.client import Client

__all__ = ["app", "template_from"]

app = typer.Typer(help="Services: N identical cells from one template.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Service name (its cells are NAME-1, NAME-2 ...).")]
Detach = Annotated[bool, typer.Option("--detach", "-d", help="Do not wait for the task.")]
Instances = Annotated[int, typer.Option("--instances", "-n", min=0, help="Number of cells.")]
MaxUnavailable = Annotated[
    int | None,
    typer.Option("--max-unavailable", min=0, help="Rollout: cells allowed below the count."),
]
MaxSurge = Annotated[
    int | None, typer.Option("--max-surge", min=0, help="Rollout: cells allowed above the count.")
]
TemplateFile = Annotated[
    Path | None,
    typer.Option(
        "--template", exists=True, help="A JSON file: the cell body without a name (docs/api.md)."
    ),
]
Image = Annotated[str | None, typer.Option("--image", "-i", help="Image of every cell.")]
Command = Annotated[
    list[str] | None, typer.Argument(help="Command and arguments of every cell, after `--`.")
]
Cpu = Annotated[float | None, typer.Option("--cpu", help="CPUs per cell.")]
Memory = Annotated[str | None, typer.Option("--memory", "-m", help="Memory per cell (512M, 1G).")]
Flavor = Annotated[str | None, typer.Option("--flavor", help="Flavor of each cell.")]
Env = Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE (repeatable).")]
Label = Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE (repeatable).")]
Port = Annotated[list[str] | None, typer.Option("--publish", "-p", help="HOST:CONTAINER\\[/udp].")]
Restart = Annotated[str | None, typer.Option("--restart", help="never, always or on-failure[:N].")]
Isolation = Annotated[
    str | None,
    typer.Option(
        "--isolation",
        help="standard, or sandbox (gVisor) for every cell; default: the tenant's minimum.",
    ),
]


def template_from(
    base: dict[str, Any],
    *,
    image: str | None = None,
    command: list[str] | None = None,
    cpu: float | None = None,
    memory: str | None = None,
    flavor: str | None = None,
    env: list[str] | None = None,
    label: list[str] | None = None,
    publish: list[str] | None = None,
    restart: str | None = None,
    isolation: str | None = None,
) -> dict[str, Any]:
    """`base` (a template file, or the service's current template) with the flags given."""
    t = dict(base)
    if image is not None:
        t["image"] = image
    if command:
        t["command"] = list(command)
    if flavor is not None:
        t.update(flavor=flavor, cpu=None, memory_mb=None)
    if cpu is not None:
        t["cpu"] = cpu
    if memory is not None:
        t["memory_mb"] = parse_memory(memory)
    if env:
        t["env"] = {**(t.get("env") or {}), **parse_env(env, "'--env'")}
    if label:
        t["labels"] = {**(t.get("labels") or {}), **parse_env(label, "'--label'")}
    if publish:
        t["ports"] = [parse_port(p) for p in publish]
    if restart is not None:
        t["restart"] = parse_restart(restart)
    if isolation is not None:
        if isolation not in ("standard", "sandbox"):
            raise typer.BadParameter(
                f"unknown isolation class {isolation!r}; one of standard, sandbox",
                param_hint="'--isolation'",
            )
        t["isolation"] = isolation
    if not t.get("image"):
        raise typer.BadParameter('give the image (--image, or "image" in --template)')
    return t


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="'--template'") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: not a JSON object", param_hint="'--template'")
    return data


def _follow(
    client: Client,
    project: str,
    name: str,
    task: dict[str, Any],
    out: output.OutputFormat,
    detach: bool,
    quiet: bool,
) -> None:
    from cellplane.cli.tasks import follow_task, print_started

    as_json = output.is_json(out)
    if detach:
        if output.print_id(quiet, task):
            return
        if as_json:
            output.print_json(task)
        else:
            print_started(task)
        return
    try:
        final = follow_task(client, task, quiet=quiet or as_json)
    except KeyboardInterrupt:
        output.err_console.print(
            f"stopped waiting; follow it with: cellplane task watch {task.get('id')}"
        )
        raise typer.Exit(130) from None
    if final.get("state") == "ERROR":
        output.fail(
            f"service {name}: {str(final.get('kind', '')).lower()} failed", final.get("error")
        )
    if output.print_id(quiet, final):
        return
    if as_json:
        output.print_json(final)
        return
    if final.get("kind") == "DELETE_SERVICE":
        output.out_console.print(f"service {output.escape(name)} deleted")
        return
    view = client.get_service(project, name)
    output.out_console.print(
        f"service {output.escape(name)} {str(view.get('state')).lower()}: "
        f"{view.get('ready')}/{view.get('instances')} ready, revision {view.get('revision')}"
    )


@app.command("create")
def create(
    name: NameArg,
    image: Image = None,
    command: Command = None,
    instances: Instances = 1,
    template: TemplateFile = None,
    cpu: Cpu = None,
    memory: Memory = None,
    flavor: Flavor = None,
    env: Env = None,
    label: Label = None,
    publish: Port = None,
    restart: Restart = None,
    isolation: Isolation = None,
    max_unavailable: MaxUnavailable = None,
    max_surge: MaxSurge = None,
    project: output.ProjectOpt = "default",
    detach: Detach = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a service of N cells from one template, spread across hosts."""
    body = template_from(
        _load(template),
        image=image,
        command=command,
        cpu=cpu,
        memory=memory,
        flavor=flavor,
        env=env,
        label=label,
        publish=publish,
        restart=restart,
        isolation=isolation,
    )
    with output.session() as client:
        task = client.create_service(
            project,
            name,
            body,
            instances,
            max_unavailable=max_unavailable,
            max_surge=max_surge,
        )
        _follow(client, project, name, task, out, detach, quiet)


@app.command("scale")
def scale(
    name: NameArg,
    instances: Annotated[int, typer.Argument(min=0, help="The new number of cells.")],
    project: output.ProjectOpt = "default",
    detach: Detach = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Set the number of cells (extra cells go at once; new ones are admitted together)."""
    with output.session() as client:
        task = client.scale_service(project, name, instances)
        _follow(client, project, name, task, out, detach, quiet)


@app.command("update")
def update(
    name: NameArg,
    image: Image = None,
    command: Command = None,
    template: TemplateFile = None,
    cpu: Cpu = None,
    memory: Memory = None,
    flavor: Flavor = None,
    env: Env = None,
    label: Label = None,
    publish: Port = None,
    restart: Restart = None,
    isolation: Isolation = None,
    max_unavailable: MaxUnavailable = None,
    max_surge: MaxSurge = None,
    project: output.ProjectOpt = "default",
    detach: Detach = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Roll out a new template: the current one (or --template) with the flags given."""
    with output.session() as client:
        base = _load(template) if template else dict(client.get_service(project, name)["template"])
        body = template_from(
            base,
            image=image,
            command=command,
            cpu=cpu,
            memory=memory,
            flavor=flavor,
            env=env,
            label=label,
            publish=publish,
            restart=restart,
            isolation=isolation,
        )
        task = client.update_service(
            project, name, body, max_unavailable=max_unavailable, max_surge=max_surge
        )
        _follow(client, project, name, task, out, detach, quiet)


@app.command("ls")
def ls(
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the services of a project."""
    with output.session() as client:
        items = client.list_services(project)
    output.print_list(
        out,
        items,
        quiet,
        ["NAME", "STATE", "READY", "REVISION", "IMAGE", "AGE", "ID"],
        (
            [
                s.get("name"),
                s.get("state"),
                f"{s.get('ready')}/{s.get('instances')}",
                s.get("revision"),
                (s.get("template") or {}).get("image"),
                output.age(s.get("created_at")),
                s.get("id"),
            ]
            for s in items
        ),
        wide_only=("ID",),
    )


@app.command("show")
def show(
    name: NameArg,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """A service: its count, template revision, rollout bounds, last task and cells."""
    with output.session() as client:
        view = client.get_service(project, name)
    task = view.get("task") or {}
    policy = view.get("update") or {}
    rows = [
        ("name", view.get("name")),
        ("id", view.get("id")),
        ("state", view.get("state")),
        ("ready", f"{view.get('ready')}/{view.get('instances')}"),
        ("revision", f"{view.get('revision')} ({view.get('current')} cells at it)"),
        ("image", (view.get("template") or {}).get("image")),
        ("isolation", view.get("isolation")),
        (
            "rollout",
            f"max unavailable {policy.get('max_unavailable')}, max surge {policy.get('max_surge')}",
        ),
        (
            "task",
            f"{task.get('kind')} {task.get('state')} {task.get('progress')}%" if task else "-",
        ),
        ("message", view.get("message") or "-"),
        (
            "cells",
            ", ".join(
                f"{c.get('name')} {c.get('state')} r{c.get('revision')}"
                for c in view.get("cells") or []
            )
            or "-",
        ),
    ]
    output.show_or_json(view, out, rows)


@app.command("rm")
def rm(
    name: NameArg,
    project: output.ProjectOpt = "default",
    detach: Detach = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Delete a service and all its cells."""
    with output.session() as client:
        task = client.delete_service(project, name)
        _follow(client, project, name, task, out, detach, quiet)
