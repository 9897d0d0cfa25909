"""`cellplane group`: the groups of the caller's tenant and their members.

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.list_groups`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cellplane.cli import output
from cellplane.cli.users import UserRef

__all__ = ["app"]

app = typer.Typer(help="Manage the groups of your tenant.", no_args_is_help=True)

GroupRef = Annotated[str, typer.Argument(help="Group name or id.")]


@app.command("ls")
def group_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List the groups of your tenant."""
    with output.session() as client:
        groups = client.list_groups()
    output.print_list(
        out,
        groups,
        quiet,
        ["NAME", "ID", "MEMBERS", "AGE"],
        (
            [
                g.get("name"),
                g.get("id"),
                ", ".join(g.get("members") or []),
                output.age(g.get("created_at")),
            ]
            for g in groups
        ),
    )


def _print_group(
    group: Mapping[str, Any], out: output.OutputFormat, done: str | None = None
) -> None:
    if output.is_json(out):
        output.print_json(group)
    elif done is not None:
        members = ", ".join(group.get("members") or []) or "none"
        output.say(f"{done}; members: {output.escape(members)}")
    else:
        output.print_fields(
            [
                ("name", group.get("name")),
                ("id", group.get("id")),
                ("members", ", ".join(group.get("members") or [])),
                ("created", group.get("created_at")),
            ]
        )


@app.command("create")
def group_create(
    name: Annotated[str, typer.Argument(help="Group name.")],
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a group."""
    with output.session() as client:
        group = client.create_group(name)
    if output.print_id(quiet, group):
        return
    name_text = output.escape(str(group.get("name")))
    _print_group(group, out, f"group {name_text} ({group.get('id')}) created")


@app.command("show")
def group_show(group: GroupRef, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show a group and its members."""
    with output.session() as client:
        data = client.get_group(group)
    _print_group(data, out)


@app.command("delete")
def group_delete(group: GroupRef) -> None:
    """Delete a group (its role assignments go with it)."""
    with output.session() as client:
        client.delete_group(group)
    output.say(f"group {output.escape(group)} deleted")


@app.command("add-member")
def group_add_member(
    group: GroupRef,
    user: UserRef,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Add a user to a group."""
    with output.session() as client:
        data = client.add_group_member(group, user)
    done = f"{output.escape(user)} added to group {output.escape(str(data.get('name')))}"
    _print_group(data, out, done)


@app.command("remove-member")
def group_remove_member(
    group: GroupRef,
    user: UserRef,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Remove a user from a group."""
    with output.session() as client:
        data = client.remove_group_member(group, user)
    done = f"{output.escape(user)} removed from group {output.escape(str(data.get('name')))}"
    _print_group(data, out, done)
