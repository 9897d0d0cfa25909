"""`cellplane audit`: read the audit log.

Attached to the root app by `cellplane.cli.main`; the request goes through the SDK
(`Client.list_audit`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(help="Read the audit log.", no_args_is_help=True)


def _when(timestamp: Any) -> str | None:
    """An ISO 8601 timestamp to the second, in the server's zone: `2025-01-31 12:00:05`."""
    if not isinstance(timestamp, str):
        return None
    return timestamp.replace("T", " ")[:19]


@app.command("ls")
def audit_ls(
    limit: Annotated[
        int, typer.Option("--limit", help="At most this many events.", min=1, max=1000)
    ] = 50,
    action: Annotated[str | None, typer.Option(help="Only this action (e.g. login).")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Only this outcome: success, failure, denied.")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (user:<id>, ...).")] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Every tenant's events (system admins).")
    ] = False,
    quiet: output.QuietOpt = False,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """List audit events, newest first."""
    with output.session() as client:
        page = client.list_audit(
            limit=limit, action=action, outcome=outcome, actor=actor, all_tenants=all_tenants
        )
        events = page.get("items") or []
    output.print_list(
        out,
        events,
        quiet,
        ["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE"],
        (
            [
                _when(e.get("at")),
                e.get("actor"),
                e.get("action"),
                e.get("target"),
                e.get("outcome"),
                e.get("source"),
            ]
            for e in events
        ),
    )
