"""`cellplane host ls|show|maintenance|enable|revoke|token`: the machines running `cellplane agent`.

Registered on the root app by `cellplane.cli.main`. Hosts are named on the
command line; a name resolves through the host list (an argument starting
with `hst-` is taken as an id).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cellplane.cli import output

if TYPE_CHECKING:
    from cellplane.client import Client

__all__ = ["Switch", "app", "resolve_host"]

app = typer.Typer(help="Inspect hosts and drain them for maintenance.", no_args_is_help=True)


class Switch(StrEnum):
    """on/off argument of `host maintenance`."""

    on = "on"
    off = "off"


def resolve_host(client: Client, ref: str) -> str:
    """The id of the host named `ref` (ids pass through)."""
    if ref.startswith("hst-"):
        return ref
    for host in client.iter_hosts():
        if host.get("name") == ref:
            return str(host["id"])
    from cellplane.client import CellplaneError

    raise CellplaneError("Not found", f"no host named {ref!r}")


def _usage(host: dict[str, Any], key: str, unit: str = "") -> str:
    used = (host.get("usage") or {}).get(key)
    total = (host.get("capacity") or {}).get(key)
    return f"{used if used is not None else '-'}/{total if total is not None else '-'}{unit}"


def cpu_capacity_text(capacity: dict[str, Any]) -> str:
    """The host's allocatable CPU and where it comes from: "2 cores x16 overcommit = 32.0"
    (the agent's `--cpu-ratio`); the number alone when the agent did not say."""
    cpu, cores, ratio = capacity.get("cpu"), capacity.get("cores"), capacity.get("cpu_ratio")
    if cpu is None:
        return "-"
    if cores is None or ratio is None:
        return f"{cpu}"
    return f"{cores} cores x{ratio:g} overcommit = {cpu}"


def _cells_text(host: dict[str, Any]) -> str:
    usage = host.get("usage") or {}
    text = f"{usage.get('cells', 0)} reserving capacity"
    stopped = usage.get("stopped_cells") or 0
    if stopped:
        text += f", {stopped} stopped or ended (reserving nothing)"
    return text


COLUMNS = [
    *("NAME", "ID", "STATE", "ADDRESS", "ZONE", "LABELS", "CPU", "MEMORY", "CELLS", "HEARTBEAT"),
    *("CPU CAPACITY", "STOPPED CELLS"),  # -o wide
]


@app.command("ls")
def ls(quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table) -> None:
    """List hosts with their state and usage (stopped and ended cells reserve nothing)."""
    with output.session() as client:
        hosts = list(client.iter_hosts())
    output.print_list(
        out,
        hosts,
        quiet,
        COLUMNS,
        (
            [
                h.get("name"),
                h.get("id"),
                h.get("state"),
                h.get("address"),
                h.get("zone"),
                ",".join(f"{k}={v}" for k, v in (h.get("labels") or {}).items()),
                _usage(h, "cpu"),
                _usage(h, "memory_mb", " MB"),
                (h.get("usage") or {}).get("cells"),
                output.age(h.get("last_heartbeat")),
                cpu_capacity_text(h.get("capacity") or {}),
                (h.get("usage") or {}).get("stopped_cells"),
            ]
            for h in hosts
        ),
        wide_only=("CPU CAPACITY", "STOPPED CELLS"),
    )


def _engine_text(host: dict[str, Any]) -> str:
    engine = host.get("engine") or {}
    text = str(engine.get("state") or "-")
    if engine.get("since"):
        text += f" since {engine['since']}"
    if engine.get("outages"):
        text += f", {engine['outages']} outage(s) recovered"
    return text


@app.command("show")
def show(
    host: Annotated[str, typer.Argument(help="Host name, or id (hst-...).")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Show one host: its state and why (heartbeats, container engine), capacity and usage."""
    with output.session() as client:
        data = client.get_host(resolve_host(client, host))
    if output.is_json(out):
        output.print_json(data)
        return
    engine = data.get("engine") or {}
    fields = [
        ("name", data.get("name")),
        ("id", data.get("id")),
        ("state", data.get("state")),
        ("reason", data.get("state_reason")),
        ("engine", _engine_text(data)),
        # While the engine is down: why; afterwards: its last failure.
        ("engine message", engine.get("message")),
        ("address", data.get("address")),
        ("zone", data.get("zone")),
        ("labels", ", ".join(f"{k}={v}" for k, v in (data.get("labels") or {}).items())),
        ("usage", "what running cells reserve; a stopped or ended cell reserves nothing"),
        ("cpu", f"{_usage(data, 'cpu')} used of {cpu_capacity_text(data.get('capacity') or {})}"),
        ("memory", _usage(data, "memory_mb", " MB")),
        ("disk", _usage(data, "disk_gb", " GB")),
        ("cells", _cells_text(data)),
        ("heartbeat", output.age(data.get("last_heartbeat"))),
        ("created", data.get("created_at")),
    ]
    output.print_table(["FIELD", "VALUE"], fields)


@app.command("maintenance")
def maintenance(
    host: Annotated[str, typer.Argument(help="Host name, or id (hst-...).")],
    switch: Annotated[Switch, typer.Argument(help="on: no new cells go there; off: back to work.")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Put a host into maintenance, or take it out."""
    with output.session() as client:
        data = client.set_maintenance(resolve_host(client, host), switch is Switch.on)
    if output.is_json(out):
        output.print_json(data)
    else:
        output.out_console.print(
            f"host {output.escape(str(data.get('name')))} ({data.get('id')}) is {data.get('state')}"
        )


@app.command("enable")
def enable(
    host: Annotated[str, typer.Argument(help="Host name, or id (hst-...).")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Take a host out of maintenance: it takes new cells again (`maintenance H off`)."""
    maintenance(host, Switch.off, out)


@app.command("revoke")
def revoke(
    host: Annotated[str, typer.Argument(help="Host name, or id (hst-...).")],
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Cut a host off at once: its certificates are revoked, its next request refused; it
    comes back only by joining again with a join token."""
    with output.session() as client:
        data = client.revoke_host(resolve_host(client, host))
    if output.is_json(out):
        output.print_json(data)
    else:
        output.out_console.print(
            f"host {output.escape(str(data.get('name')))} ({data.get('id')}) revoked at "
            f"{data.get('revoked_at')}: {data.get('state')}"
        )


token_app = typer.Typer(help="Join tokens: what agents join with.", no_args_is_help=True)
app.add_typer(token_app, name="token")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float | None:
    """'90s', '15m', '1h', '7d' or a number of seconds; 'never': no expiry."""
    if text == "never":
        return None
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a duration (e.g. 90s, 15m, 1h, 7d, never)", param_hint="--ttl"
        ) from None
    if value <= 0:
        raise typer.BadParameter(f"{text!r} must be above zero", param_hint="--ttl")
    return value


@token_app.command("create")
def token_create(
    ttl: Annotated[str, typer.Option(help="Lifetime: 90s, 15m, 1h, 7d, or never.")] = "1h",
    uses: Annotated[
        int, typer.Option(help="How many hosts may join with it (0: no limit).", min=0)
    ] = 1,
    out: output.OutputOpt = output.OutputFormat.table,
) -> None:
    """Create a join token (shown once): `cellplane agent --server URL --join-token T`."""
    ttl_s = parse_ttl(ttl)
    with output.session() as client:
        data = client.create_join_token(ttl_s=ttl_s, uses=uses or None)
    if output.is_json(out):
        output.print_json(data)
        return
    output.secret_once("Join token", str(data["token"]))
    output.say(
        f"id {data['id']}, expires {data.get('expires_at') or 'never'}, "
        f"uses {data.get('uses_left') if data.get('uses_left') is not None else 'unlimited'}"
    )


@token_app.command("ls")
def token_ls(
    quiet: output.QuietOpt = False, out: output.OutputOpt = output.OutputFormat.table
) -> None:
    """List join tokens (the tokens themselves are never shown again)."""
    with output.session() as client:
        items = client.list_join_tokens()
    output.print_list(
        out,
        items,
        quiet,
        ["ID", "STATE", "EXPIRES", "USES LEFT", "USED", "CREATED BY"],
        (
            [
                t.get("id"),
                t.get("state"),
                t.get("expires_at") or "never",
                "unlimited" if t.get("uses_left") is None else t.get("uses_left"),
                t.get("used"),
                t.get("created_by"),
            ]
            for t in items
        ),
    )


@token_app.command("rm")
def token_rm(token_id: Annotated[str, typer.Argument(help="Join token id (jtk-...).")]) -> None:
    """Delete a join token: no agent joins with it any more."""
    with output.session() as client:
        client.delete_join_token(token_id)
    output.say(f"deleted join token {token_id}")
