"""`cellplane user`: the users of the caller's tenant.

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.list_users`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cellplane.cli import output

__all__ = ["UserRef", "app"]

app = typer.Typer(help="Manage the users of your tenant.", no_args_is_help=True)

UserRef = Annotated[str, typer.Argument(help="User name or id.")]


def _user_status(u: Mapping[str, Any]) -> str:
    states = [s for s, on in (("disabled", u.get("disabled")), ("locked", u.get("locked"))) if on]
    return ", ".join(states) or "active"


def _user_rows(u: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("name", u.get("name")),
        ("id", u.get("id")),
        ("display name", u.get("display_name")),
        ("email", u.get("email")),
        ("source", u.get("source")),
        ("status", _user_status(u)),
        ("created", u.get("created_at")),
    ]


@app.command("ls")
def user_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List the users of your tenant."""
    with output.session() as client:
        users = client.list_users()
    output.print_list(
        out,
        users,
        quiet,
        ["NAME", "ID", "EMAIL", "SOURCE", "STATUS", "AGE"],
        (
            [
                u.get("name"),
                u.get("id"),
                u.get("email"),
                u.get("source"),
                _user_status(u),
                output.age(u.get("created_at")),
            ]
            for u in users
        ),
    )


@app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="User name.")],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    display_name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from stdin (default: one is generated)."
        ),
    ] = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a local user (give them roles with `cellplane role assign`)."""
    password = output.read_stdin_secret("password") if password_stdin else None
    with output.session() as client:
        user = client.create_user(name, password=password, email=email, display_name=display_name)
    if output.print_id(quiet, user):
        if user.get("password"):
            output.secret_to_stderr("password", str(user["password"]))
        return
    if output.is_json(out):
        output.print_json(user)
        return
    output.say(f"user {output.escape(str(user.get('name')))} ({user.get('id')}) created")
    if user.get("password"):
        output.secret_once("password", str(user["password"]))


@app.command("show")
def user_show(user: UserRef, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show a user."""
    with output.session() as client:
        data = client.get_user(user)
    output.show_or_json(data, out, _user_rows(data))


@app.command("update")
def user_update(
    user: UserRef,
    email: Annotated[str | None, typer.Option(help="New email address.")] = None,
    display_name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    disabled: Annotated[
        bool | None,
        typer.Option("--disable/--enable", help="Disable (or enable again) the account."),
    ] = None,
    unlock: Annotated[
        bool, typer.Option("--unlock", help="Clear a lockout after failed logins.")
    ] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Set a new password, read from stdin (ends their sessions)."
        ),
    ] = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Change a user's details, status or password."""
    body: dict[str, Any] = {"email": email, "display_name": display_name, "disabled": disabled}
    body = {k: v for k, v in body.items() if v is not None}
    if unlock:
        body["unlock"] = True
    if password_stdin:
        body["password"] = output.read_stdin_secret("password")
    if not body:
        raise typer.BadParameter(
            "nothing to change: pass --email, --display-name, --disable/--enable, --unlock "
            "or --password-stdin"
        )
    with output.session() as client:
        data = client.update_user(
            user,
            email=email,
            display_name=display_name,
            disabled=disabled,
            unlock=unlock,
            password=body.get("password"),
        )
    if output.is_json(out):
        output.print_json(data)
        return
    changed = ", ".join(sorted(body))
    output.say(f"user {output.escape(str(data.get('name')))} updated: {output.escape(changed)}")


@app.command("delete")
def user_delete(user: UserRef) -> None:
    """Delete a user (their group memberships, roles and sessions go with them)."""
    with output.session() as client:
        client.delete_user(user)
    output.say(f"user {output.escape(user)} deleted")
