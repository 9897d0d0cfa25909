"""`cellplane cluster ...`: Serengeti-style clusters from specs, with live per-node progress.

Registered on the root app by `cellplane.cli.main`. Options keep Serengeti's CLI spelling
(`--name`, `--distro`, `--specFile`, `--nodeGroup`, `--instanceNum`). Long operations show a
live table of nodes (state and each role's readiness) on stderr until the task ends, and exit 1
when it fails, printing the failing node, role and the tail of its log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cellplane.client import Client

__all__ = ["app", "final_frame", "render_cluster"]

app = typer.Typer(
    help="Deploy and manage clusters from specs (BDE/Serengeti).", no_args_is_help=True
)

NameArg = Annotated[str | None, typer.Argument(help="Cluster name.", show_default=False)]
# The old spelling, kept working: `cluster show --name zk` is `cluster show zk`.
NameOpt = Annotated[str | None, typer.Option("--name", help="Cluster name.", hidden=True)]


def _name(arg: str | None, opt: str | None) -> str:
    if arg and opt and arg != opt:
        raise typer.BadParameter(f"two names: {arg!r} and --name {opt!r}", param_hint="NAME")
    name = arg or opt
    if not name:
        raise typer.BadParameter("give the cluster's name", param_hint="NAME")
    return name


Detach = Annotated[bool, typer.Option("--detach", "-d", help="Do not wait for the task.")]
SpecFile = Annotated[
    Path | None,
    typer.Option("--specFile", help="A cluster spec (JSON, either Serengeti form).", exists=True),
]

_STATE_STYLE = {
    "SERVICE_READY": "green",
    "READY": "green",
    "RUNNING": "green",
    "FAILED": "red",
    "PROVISION_ERROR": "red",
    "STOPPED": "yellow",
    "DEGRADED": "yellow",
}


def _styled(state: str | None) -> str:
    text = output.escape(str(state or "-"))
    style = _STATE_STYLE.get(str(state))
    return f"[{style}]{text}[/]" if style else text


def render_cluster(view: dict[str, Any], *, wide: bool = False) -> RenderableType:
    """A table of the cluster's nodes: group, roles with their readiness, node state, host (by
    name; `wide` adds the cell and host ids and the address). Its title fits one line."""
    from rich import box
    from rich.table import Table

    task = view.get("task") or {}
    title = f"cluster {output.escape(str(view.get('name')))} {_styled(view.get('state'))}"
    if task:
        title += f"  {str(task.get('kind', '')).lower()} {task.get('progress', 0)}%"
    columns = ["NODE", "GROUP", "ROLES", "STATE", "HOST"]
    if wide:
        columns += ["ADDRESS", "CELL ID", "HOST ID"]
    table = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for node in view.get("nodes") or []:
        states = node.get("role_states") or {}
        roles = ", ".join(
            f"{output.escape(r)} {_styled(states.get(r, 'PENDING'))}" for r in node.get("roles", [])
        )
        row = [
            output.escape(str(node.get("name"))),
            output.escape(str(node.get("group"))),
            roles,
            _styled(node.get("state")),
            output.escape(str(node.get("host_name") or node.get("host") or "-")),
        ]
        if wide:
            row += [str(node.get(k) or "-") for k in ("address", "cell", "host")]
        table.add_row(*row)
    return table


def final_frame(last: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """The view to draw once the task ended. A deleted cluster has no view left: its last one
    with every node DELETED (never a node still READY), the task done."""
    if final.get("nodes") is not None or not last:
        return final
    task = {**(last.get("task") or {}), **(final.get("task") or {}), "progress": 100}
    nodes = [{**n, "state": final.get("state"), "role_states": {}} for n in last.get("nodes") or []]
    return {**last, "state": final.get("state"), "task": task, "nodes": nodes}


def _resolve(client: Client, project: str, name: str) -> dict[str, Any]:
    from cellplane.client import CellplaneError

    found = client.find_cluster(project, name)
    if found is None:
        raise CellplaneError("Not found", f"no cluster named {name!r} in project {project!r}")
    return found


def _follow(
    client: Client,
    cluster_id: str,
    task: dict[str, Any],
    out: output.OutputFormat,
    detach: bool,
    quiet: bool = False,
) -> None:
    from rich.live import Live

    from cellplane.cli.tasks import print_started

    as_json = output.is_json(out)
    if detach:
        if output.print_id(quiet, {"id": cluster_id}):
            return
        if as_json:
            output.print_json(task)
        else:
            print_started(task)
        return
    last: dict[str, Any] = {}
    try:
        if as_json or quiet:
            final = client.wait_cluster(cluster_id, str(task["id"]), timeout=None)
        else:
            with Live(console=output.err_console, auto_refresh=False, transient=False) as live:

                def show(view: dict[str, Any]) -> None:
                    if view.get("nodes") is not None:
                        last.clear()
                        last.update(view)
                        live.update(render_cluster(view), refresh=True)

                final = client.wait_cluster(
                    cluster_id, str(task["id"]), timeout=None, on_change=show
                )
                # The last frame is the final state (a deleted cluster: its nodes DELETED).
                live.update(render_cluster(final_frame(last, final)), refresh=True)
    except KeyboardInterrupt:
        output.err_console.print(
            f"stopped waiting; follow it with: cellplane task watch {task.get('id')}"
        )
        raise typer.Exit(130) from None
    failed = (final.get("task") or {}).get("state") == "ERROR"
    if quiet and not failed:
        output.print_id(quiet, {"id": cluster_id})
    elif as_json:
        output.print_json(final)
    elif not failed:
        name = final.get("name") or last.get("name") or cluster_id
        output.out_console.print(
            f"cluster {output.escape(str(name))} {str(final.get('state', '')).lower()}"
        )
    if failed:
        output.fail(
            f"cluster {final.get('name', cluster_id)} is {final.get('state')}",
            str(final.get("message") or (final.get("task") or {}).get("error") or ""),
        )


def _load_spec(path: Path) -> dict[str, Any]:
    """Read a spec file as the server's catalog does (comments, bare words, a stray brace)."""
    from cellplane.clusters import jsonc

    try:
        data = jsonc.load_file(path)
    except jsonc.JsoncError as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="'--specFile'") from None
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path}: not a JSON object", param_hint="'--specFile'")
    return data


@app.command("create")
def create(
    name: NameArg = None,
    name_opt: NameOpt = None,
    distro: Annotated[
        str | None, typer.Option("--distro", help="Distro (see `cellplane cluster distros`).")
    ] = None,
    type: Annotated[
        str | None, typer.Option("--type", help="Spec type in the distro's map.")
    ] = None,
    spec_file: SpecFile = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the new cluster's id.")
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a cluster from the distro's spec or a spec file, and follow it node by node."""
    name = _name(name, name_opt)
    if distro is None and spec_file is None:
        raise typer.BadParameter("give --distro, --specFile or both", param_hint="'--distro'")
    spec = _load_spec(spec_file) if spec_file else None
    with output.session() as client:
        task = client.create_cluster(project, name, distro=distro, type=type, spec=spec)
        _follow(client, str(task["entity"]["id"]), task, out, detach, quiet)


def _simple(
    action: str, name: str, project: str, out: output.OutputFormat, detach: bool, **kw: Any
) -> None:
    with output.session() as client:
        cluster = _resolve(client, project, name)
        cid = str(cluster["id"])
        fn = getattr(client, f"{action}_cluster")
        task = fn(cid, **kw)
        _follow(client, cid, task, out, detach)


@app.command("resize")
def resize(
    node_group: Annotated[str, typer.Option("--nodeGroup", help="Node group to resize.")],
    instance_num: Annotated[int, typer.Option("--instanceNum", help="New node count.", min=0)],
    name: NameArg = None,
    name_opt: NameOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Scale a node group out (new members join) or in (where its roles allow)."""
    name = _name(name, name_opt)
    with output.session() as client:
        cid = str(_resolve(client, project, name)["id"])
        task = client.resize_cluster(cid, node_group, instance_num)
        _follow(client, cid, task, out, detach)


@app.command("stop")
def stop(
    name: NameArg = None,
    name_opt: NameOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Stop every node, against the dependency order."""
    name = _name(name, name_opt)
    _simple("stop", name, project, out, detach)


@app.command("start")
def start(
    name: NameArg = None,
    name_opt: NameOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Start every node in dependency order and wait until each role is ready."""
    name = _name(name, name_opt)
    _simple("start", name, project, out, detach)


@app.command("resume")
def resume(
    name: NameArg = None,
    name_opt: NameOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Continue a failed provisioning; healthy nodes are left alone."""
    name = _name(name, name_opt)
    _simple("resume", name, project, out, detach)


@app.command("delete")
def delete(
    name: NameArg = None,
    name_opt: NameOpt = None,
    keep_volumes: Annotated[bool, typer.Option("--keepVolumes", help="Keep data volumes.")] = False,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Delete the cluster and every cell of it."""
    name = _name(name, name_opt)
    _simple("delete", name, project, out, detach, keep_volumes=keep_volumes)


@app.command("config")
def config(
    spec_file: Annotated[
        Path, typer.Option("--specFile", help="Spec whose `configuration` to apply.", exists=True)
    ],
    name: NameArg = None,
    name_opt: NameOpt = None,
    detach: Detach = False,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Apply a new cluster configuration: re-render every node and restart them one by one."""
    name = _name(name, name_opt)
    data = _load_spec(spec_file)
    configuration = data.get("configuration", data)
    _simple("configure", name, project, out, detach, configuration=configuration)


@app.command("list")
def list_(
    project: output.ProjectOpt = "default",
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List the clusters of a project."""
    with output.session() as client:
        items = client.list_clusters(project)
    output.print_list(
        out,
        items,
        quiet,
        ["NAME", "ID", "DISTRO", "STATE", "NODES", "AGE"],
        (
            [
                c.get("name"),
                c.get("id"),
                c.get("distro"),
                c.get("state"),
                len(c.get("nodes") or []),
                output.age(c.get("created_at")),
            ]
            for c in items
        ),
    )


@app.command("distros")
def distros(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List the distros (for `cluster create --distro`): deployable here, and if not, why."""
    with output.session() as client:
        items = client.catalog_distros()
    if out is output.OutputFormat.json:
        output.print_json(items)
        return
    output.print_table(
        ["NAME", "VERSION", "DEPLOYABLE", "ROLES"],
        (
            [
                d.get("name"),
                d.get("version"),
                "yes" if d.get("deployable") else "no",
                ", ".join(d.get("roles") or []),
            ]
            for d in items
        ),
    )
    for d in items:
        for reason in d.get("reasons") or []:
            output.out_console.print(
                f"{output.escape(str(d.get('name')))}: {output.escape(str(reason))}",
                soft_wrap=True,
            )


@app.command("show")
def show(
    name: NameArg = None,
    name_opt: NameOpt = None,
    project: output.ProjectOpt = "default",
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show a cluster: nodes, roles, states, endpoints, its last events and the last error."""
    name = _name(name, name_opt)
    with output.session() as client:
        view = _resolve(client, project, name)
    if output.is_json(out):
        output.print_json(view)
        return
    output.out_console.print(render_cluster(view, wide=out is output.OutputFormat.wide))
    for g in view.get("nodeGroups") or []:
        if g.get("cellName") and g.get("cellName") != g.get("name"):
            output.out_console.print(
                f"group {output.escape(str(g['name']))}: cells "
                f"{output.escape(str(view.get('name')))}-{output.escape(str(g['cellName']))}-<n>"
            )
    for role, ports in (view.get("endpoints") or {}).items():
        for port_name, addrs in ports.items():
            output.out_console.print(f"{output.escape(role)} {port_name}: {', '.join(addrs)}")
    for role, leader in (view.get("leaders") or {}).items():
        where = ", ".join(f"{k} {v}" for k, v in (leader.get("endpoints") or {}).items())
        output.out_console.print(
            f"{output.escape(role)} leader: {output.escape(str(leader.get('node')))} ({where})"
        )
    for role, ports in (view.get("urls") or {}).items():
        for port_name, urls in ports.items():
            line = f"{role} {port_name} url: {', '.join(urls)}"
            output.out_console.print(output.escape(line))
    for note in view.get("placement_notes") or []:
        output.out_console.print(f"[yellow]placement:[/] {output.escape(str(note))}")
    events = view.get("events") or []
    if events:
        output.out_console.print("events:")
        for e in events[-10:]:
            output.out_console.print(
                f"  {output.age(e.get('at'))} ago  {output.escape(str(e.get('type')))}  "
                f"{output.escape(str(e.get('message')))}",
                soft_wrap=True,
            )
    if view.get("message"):
        output.out_console.print(f"[red]{output.escape(str(view['message']))}[/]")


@app.command("export")
def export(
    name: NameArg = None,
    name_opt: NameOpt = None,
    spec_file: Annotated[
        Path | None, typer.Option("--specFile", help="Write the spec here instead of stdout.")
    ] = None,
    project: output.ProjectOpt = "default",
) -> None:
    """Print the spec that reproduces the cluster (Serengeti's camelCase form)."""
    name = _name(name, name_opt)
    with output.session() as client:
        spec = client.export_cluster(str(_resolve(client, project, name)["id"]))
    if spec_file is None:
        output.print_json(spec)
    else:
        spec_file.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
