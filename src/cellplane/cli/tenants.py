"""`cellplane tenant`: tenants (system admins; a tenant admin sees their own).

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.list_tenants`, ...).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(help="Manage tenants (system admins).", no_args_is_help=True)


@app.command("ls")
def tenant_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List tenants (a tenant admin sees their own)."""
    with output.session() as client:
        tenants = client.list_tenants()
    output.print_list(
        out,
        tenants,
        quiet,
        ["NAME", "ID", "AGE"],
        ([t.get("name"), t.get("id"), output.age(t.get("created_at"))] for t in tenants),
    )


@app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name (a DNS label).")],
    admin_name: Annotated[
        str, typer.Option("--admin-name", help="Name of the tenant's first admin.")
    ] = "admin",
    admin_password_stdin: Annotated[
        bool,
        typer.Option(
            "--admin-password-stdin",
            help="Read the admin's password from stdin (default: one is generated).",
        ),
    ] = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a tenant with its `default` project and its first admin user."""
    admin: dict[str, Any] = {"name": admin_name}
    if admin_password_stdin:
        admin["password"] = output.read_stdin_secret("password")
    with output.session() as client:
        tenant = client.create_tenant(name, admin=admin)
    if output.print_id(quiet, tenant):
        if (tenant.get("admin") or {}).get("password"):
            output.secret_to_stderr("admin password", str(tenant["admin"]["password"]))
        return
    if output.is_json(out):
        output.print_json(tenant)
        return
    user = tenant.get("admin") or {}
    output.say(
        f"tenant {output.escape(str(tenant.get('name')))} ({tenant.get('id')}) created; "
        f"admin user {output.escape(str(user.get('name')))} ({user.get('id')})"
    )
    if user.get("password"):
        output.secret_once("admin password", str(user["password"]))


@app.command("show")
def tenant_show(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show a tenant."""
    with output.session() as client:
        data = client.get_tenant(tenant)
    output.show_or_json(
        data,
        out,
        [
            ("name", data.get("name")),
            ("id", data.get("id")),
            ("isolation", _policy_text(dict(data))),
            ("created", data.get("created_at")),
        ],
    )


def _policy_text(data: dict[str, Any]) -> str:
    minimum = data.get("min_isolation")
    return f"{minimum} or stronger (policy)" if minimum else "any (no policy)"


def print_policy_update(data: dict[str, Any], what: str, out: output.OutputFormat) -> None:
    """The answer to a policy change: the new minimum and the cells left below it."""
    if output.is_json(out):
        output.print_json(data)
        return
    output.say(f"{what} {output.escape(str(data.get('name')))}: isolation {_policy_text(data)}")
    below = data.get("cells_below_policy") or []
    if below:
        output.say(
            f"{len(below)} existing cell(s) run below it and were not changed "
            "(recreate them to apply the policy):"
        )
        output.print_table(
            ["PROJECT", "CELL", "ID", "ISOLATION"],
            ([c.get("project"), c.get("name"), c.get("id"), c.get("isolation")] for c in below),
        )


@app.command("update")
def tenant_update(
    tenant: Annotated[str, typer.Argument(help="Tenant name or id.")],
    isolation: Annotated[
        str,
        typer.Option(
            help="Minimum isolation class of its cells: sandbox, or standard (no policy)."
        ),
    ],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Set a tenant's policy: the weakest isolation class its cells may use (system admins)."""
    with output.session() as client:
        data = client.update_tenant(tenant, isolation=isolation)
    print_policy_update(dict(data), "tenant", out)


@app.command("delete")
def tenant_delete(tenant: Annotated[str, typer.Argument(help="Tenant name or id.")]) -> None:
    """Delete a tenant and its directory (refused while it has cells, volumes or clusters)."""
    with output.session() as client:
        client.delete_tenant(tenant)
    output.say(f"tenant {output.escape(tenant)} deleted")
