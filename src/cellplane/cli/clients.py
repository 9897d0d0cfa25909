"""`cellplane client`: OAuth clients of the caller's tenant (service accounts are
confidential clients).

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.list_oauth_clients`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(
    help="Manage OAuth clients (service accounts are confidential clients).", no_args_is_help=True
)

ClientRef = Annotated[str, typer.Argument(help="Client name or id.")]


def _client_rows(c: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("name", c.get("name")),
        ("client id", c.get("client_id")),
        ("type", "public" if c.get("public") else "confidential"),
        ("grant types", ", ".join(c.get("grant_types") or [])),
        ("redirect URIs", ", ".join(c.get("redirect_uris") or [])),
        ("created", c.get("created_at")),
    ]


@app.command("ls")
def client_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List the OAuth clients of your tenant."""
    with output.session() as client:
        clients = client.list_oauth_clients()
    output.print_list(
        out,
        clients,
        quiet,
        ["NAME", "CLIENT ID", "TYPE", "GRANTS", "AGE"],
        (
            [
                c.get("name"),
                c.get("client_id"),
                "public" if c.get("public") else "confidential",
                ", ".join(c.get("grant_types") or []),
                output.age(c.get("created_at")),
            ]
            for c in clients
        ),
    )


def _print_secret(data: Mapping[str, Any]) -> None:
    secret = data.get("client_secret")
    if not secret:
        return
    output.secret_once("client secret", str(secret))
    output.err_console.print(
        "log in with it: cellplane login --client-id "
        f"{output.escape(str(data.get('client_id')))} --client-secret-stdin"
    )


@app.command("create")
def client_create(
    name: Annotated[str, typer.Argument(help="Client name.")],
    public: Annotated[
        bool, typer.Option("--public", help="A public client (no secret, e.g. a browser app).")
    ] = False,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            help="Grant type (repeat): client_credentials (default), authorization_code, "
            "refresh_token, password.",
        ),
    ] = None,
    redirect_uri: Annotated[
        list[str] | None,
        typer.Option("--redirect-uri", help="Redirect URI for authorization_code (repeat)."),
    ] = None,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create an OAuth client; a confidential one (a service account) gets a secret."""
    with output.session() as client:
        data = client.create_oauth_client(
            name, public=public, grant_types=grant, redirect_uris=redirect_uri or ()
        )
    if output.print_id(quiet, data, "client_id"):
        if data.get("client_secret"):
            output.secret_to_stderr("client secret", str(data["client_secret"]))
        return
    if output.is_json(out):
        output.print_json(data)
        return
    output.say(f"client {output.escape(str(data.get('name')))} ({data.get('client_id')}) created")
    _print_secret(data)


@app.command("show")
def client_show(client_ref: ClientRef, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show an OAuth client."""
    with output.session() as client:
        data = client.get_oauth_client(client_ref)
    output.show_or_json(data, out, _client_rows(data))


@app.command("rotate-secret")
def client_rotate_secret(
    client_ref: ClientRef, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """Give a confidential client a new secret (the old one stops working at once)."""
    with output.session() as client:
        data = client.rotate_oauth_client_secret(client_ref)
    if output.is_json(out):
        output.print_json(data)
        return
    output.say(
        f"client {output.escape(str(data.get('name')))} ({data.get('client_id')}) has a new secret"
    )
    _print_secret(data)


@app.command("delete")
def client_delete(client_ref: ClientRef) -> None:
    """Delete an OAuth client (its roles and refresh tokens go with it)."""
    with output.session() as client:
        client.delete_oauth_client(client_ref)
    output.say(f"client {output.escape(client_ref)} deleted")
