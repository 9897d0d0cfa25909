"""`cellplane role`: assign, revoke and list role assignments.

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.assign_role`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(help="Assign and revoke roles.", no_args_is_help=True)


def _subject_text(a: Mapping[str, Any]) -> str:
    subject = a.get("subject") or {}
    return f"{subject.get('kind')}:{subject.get('name') or subject.get('id')}"


@app.command("assign")
def role_assign(
    role: Annotated[
        str,
        typer.Argument(help="tenant-admin, project-member, project-viewer or system-admin."),
    ],
    user: Annotated[str | None, typer.Option("--user", help="To this user.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="To this group.")] = None,
    client_ref: Annotated[
        str | None, typer.Option("--client", help="To this client (service account).")
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="In this project only (default: tenant-wide).")
    ] = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Assign a role to a user, a group or a client, tenant-wide or in one project."""
    named = [(k, v) for k, v in (("user", user), ("group", group), ("client", client_ref)) if v]
    if len(named) != 1:
        raise typer.BadParameter("name exactly one of --user, --group or --client")
    with output.session() as client:
        data = client.assign_role(
            role, user=user, group=group, client=client_ref, project=project or None
        )
    if output.is_json(out):
        output.print_json(data)
        return
    where = f"in project {data.get('project')}" if data.get("project") else f"({data.get('scope')})"
    output.say(
        f"role {output.escape(str(data.get('role')))} assigned to "
        f"{output.escape(_subject_text(data))} {output.escape(where)}: {data.get('id')}"
    )


@app.command("revoke")
def role_revoke(
    assignment_id: Annotated[str, typer.Argument(help="Assignment id (rol-...; see role ls).")],
) -> None:
    """Remove a role assignment."""
    with output.session() as client:
        client.revoke_role(assignment_id)
    output.say(f"role assignment {output.escape(assignment_id)} revoked")


@app.command("ls")
def role_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List the role assignments of your tenant."""
    with output.session() as client:
        assignments = client.list_role_assignments()
    output.print_list(
        out,
        assignments,
        quiet,
        ["ID", "ROLE", "SCOPE", "SUBJECT", "PROJECT", "AGE"],
        (
            [
                a.get("id"),
                a.get("role"),
                a.get("scope"),
                _subject_text(a),
                a.get("project"),
                output.age(a.get("created_at")),
            ]
            for a in assignments
        ),
    )
