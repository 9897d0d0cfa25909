"""`cellplane quota`: show and set the limits of a tenant or a project.

Attached to the root app by `cellplane.cli.main`; every request goes through the SDK
(`Client.get_tenant_quota`, `Client.set_project_quota`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    from cellplane.client import Client
    from cellplane.client.models import Quota

__all__ = ["app"]

app = typer.Typer(help="Show and set tenant and project quotas.", no_args_is_help=True)

_RESOURCES = ("cpu", "memory_mb", "disk_gb", "cells", "volumes_gb")
_CLEAR = frozenset({"none", "unlimited", "-"})
TenantScope = Annotated[str | None, typer.Option("--tenant", help="A tenant's quota.")]
ProjectScope = Annotated[str | None, typer.Option("--project", help="A project's quota.")]


def _scope(client: Client, tenant: str | None, project: str | None) -> tuple[str, str]:
    """("project", name) or ("tenant", name); no scope given is the caller's tenant."""
    if tenant and project:
        raise typer.BadParameter("use --tenant or --project, not both", param_hint="'--tenant'")
    if project:
        return "project", project
    if not tenant:
        tenant = str(client.whoami().get("tenant") or "")
    return "tenant", tenant


def _get_quota(client: Client, scope: tuple[str, str]) -> Quota:
    kind, name = scope
    return client.get_project_quota(name) if kind == "project" else client.get_tenant_quota(name)


def _limit_text(value: Any) -> str:
    return "unlimited" if value is None else str(value)


def _print_quota(data: Quota, out: output.OutputFormat) -> None:
    if output.is_json(out):
        output.print_json(data)
        return
    limits, usage = data.get("limits") or {}, data.get("usage") or {}
    allocated = data.get("allocated")
    columns = ["RESOURCE", "LIMIT", "USED"] + (["ALLOCATED TO PROJECTS"] if allocated else [])
    scope = (
        f"project {data.get('project')} of tenant {data.get('tenant')}"
        if data.get("scope") == "project"
        else f"tenant {data.get('tenant')}"
    )
    output.print_table(
        columns,
        (
            [r, _limit_text(limits.get(r)), usage.get(r)]
            + ([allocated.get(r)] if allocated else [])
            for r in _RESOURCES
        ),
        title=f"quota of {scope}",
    )


@app.command("show")
def quota_show(
    tenant: TenantScope = None,
    project: ProjectScope = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show the limits and usage of a tenant (default: yours) or of a project."""
    with output.session() as client:
        data = _get_quota(client, _scope(client, tenant, project))
    _print_quota(data, out)


def _parse_limit(value: str | None, option: str, integer: bool) -> tuple[bool, Any]:
    """(given, limit): `none`/`unlimited` clears the limit."""
    if value is None:
        return False, None
    text = value.strip().lower()
    if text in _CLEAR:
        return True, None
    try:
        number: float | int = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise typer.BadParameter(f"{value!r} is not {kind} or 'none'", param_hint=option) from None
    if number < 0 or number != number or number in (float("inf"), float("-inf")):
        raise typer.BadParameter(f"{value!r} must be 0 or more", param_hint=option)
    return True, number


def _limit_opt(flag: str, what: str) -> Any:
    return typer.Option(flag, help=f"{what} ('none' removes the limit).")


@app.command("set")
def quota_set(
    tenant: TenantScope = None,
    project: ProjectScope = None,
    cpu: Annotated[str | None, _limit_opt("--cpu", "CPUs")] = None,
    memory_mb: Annotated[str | None, _limit_opt("--memory-mb", "Memory in MB")] = None,
    disk_gb: Annotated[str | None, _limit_opt("--disk-gb", "Cell disk in GB")] = None,
    cells: Annotated[str | None, _limit_opt("--cells", "Number of cells")] = None,
    volumes_gb: Annotated[str | None, _limit_opt("--volumes-gb", "Volume space in GB")] = None,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Change some limits of a tenant's or a project's quota (the others stay as they are)."""
    if bool(tenant) == bool(project):
        raise typer.BadParameter("name exactly one of --tenant or --project")
    changes: dict[str, Any] = {}
    for name, value, integer in (
        ("cpu", cpu, False),
        ("memory_mb", memory_mb, True),
        ("disk_gb", disk_gb, True),
        ("cells", cells, True),
        ("volumes_gb", volumes_gb, True),
    ):
        given, limit = _parse_limit(value, f"'--{name.replace('_', '-')}'", integer)
        if given:
            changes[name] = limit
    if not changes:
        raise typer.BadParameter(
            "nothing to set: pass --cpu, --memory-mb, --disk-gb, --cells or --volumes-gb"
        )
    with output.session() as client:
        kind, scope_name = scope = _scope(client, tenant, project)
        current: Mapping[str, Any] = _get_quota(client, scope).get("limits") or {}
        limits = {r: current.get(r) for r in _RESOURCES} | changes
        if kind == "project":
            data = client.set_project_quota(scope_name, limits)
        else:
            data = client.set_tenant_quota(scope_name, limits)
    _print_quota(data, out)
