"""What every CLI command shares: option types, the API session, printing, errors.

Called by each noun module of `cellplane.cli`. `session()` is the one place
where API and configuration errors become a red message on stderr and exit
code 1, so commands only describe the happy path. Results go to stdout
(tables or JSON, `-o`); progress and errors go to stderr, so `-o json` output
can always be piped into `jq`.

Tests replace `client_factory` to run commands against an `httpx.MockTransport`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cellplane.client import Client

__all__ = [
    "OutputFormat",
    "OutputOpt",
    "ProjectOpt",
    "age",
    "client_factory",
    "err_console",
    "escape",
    "fail",
    "is_json",
    "out_console",
    "print_fields",
    "print_json",
    "print_table",
    "read_stdin_secret",
    "say",
    "secret_once",
    "session",
    "show_or_json",
]


class OutputFormat(StrEnum):
    """How results are printed."""

    table = "table"
    json = "json"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts (the API objects)."),
]
ProjectOpt = Annotated[
    str,
    typer.Option("--project", envvar="CELLPLANE_PROJECT", help="Project the command acts in."),
]

# highlight=False: ids and numbers should look the same in every row.
out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


def _default_client() -> Client:
    # Imported here: httpx is the slowest import of the CLI, and --help never needs it.
    from cellplane.client import Client

    return Client.from_config()


client_factory: Callable[[], Client] = _default_client


def fail(title: str, detail: str | None = None, code: int = 1) -> NoReturn:
    """Print an error in red on stderr and exit."""
    err_console.print(f"[bold red]Error:[/] [red]{escape(title)}[/]")
    if detail:
        err_console.print(f"[red]{escape(detail)}[/]")
    raise typer.Exit(code)


def escape(text: str) -> str:
    """Escape Rich markup in text that came from the server or the user."""
    from rich import markup

    return markup.escape(text)


@contextmanager
def session() -> Iterator[Client]:
    """An API client for one command; API errors print and exit 1."""
    from cellplane.client import CellplaneError

    try:
        with client_factory() as client:
            yield client
    except CellplaneError as exc:
        title = exc.title if exc.status is None else f"{exc.title} ({exc.status})"
        details = [exc.detail] if exc.detail else []
        details += [f"{e.get('field', '?')}: {e.get('message', '')}" for e in exc.errors]
        fail(title, "\n".join(details) or None)


def print_json(data: Any) -> None:
    """Print API objects as JSON on stdout, unstyled so that it stays parseable."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """Print rows as a Rich table on stdout; None shows as '-'."""
    from rich import box
    from rich.table import Table

    table = Table(*columns, box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for row in rows:
        table.add_row(*("-" if v is None or v == "" else escape(str(v)) for v in row))
    out_console.print(table)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """'3m', '2h', '5d' since an ISO 8601 timestamp; '-' when unknown."""
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- shared by the identity nouns (tenant, user, group, client, role, quota, cert, audit) ----------


def is_json(out: OutputFormat) -> bool:
    return out is OutputFormat.json


def say(text: str) -> None:
    """One line of Rich markup on stdout (escape what the server sent)."""
    out_console.print(text)


def read_stdin_secret(what: str) -> str:
    """The first line of stdin (without its newline); fails when it is empty."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        fail(f"no {what} on stdin")
    return line


def secret_once(label: str, secret: str) -> None:
    """Print a generated secret once: the value on stdout, the warning on stderr."""
    err_console.print(
        f"[yellow]Warning:[/] the {escape(label)} is shown only now; it cannot be retrieved again."
    )
    say(f"{escape(label)}: {escape(secret)}")


def print_fields(rows: Iterable[tuple[str, Any]]) -> None:
    """A FIELD/VALUE table: how `show` commands print one object."""
    print_table(["FIELD", "VALUE"], rows)


def show_or_json(data: Any, out: OutputFormat, rows: Iterable[tuple[str, Any]]) -> None:
    """The object as JSON with `-o json`, else its rows as a FIELD/VALUE table."""
    if is_json(out):
        print_json(data)
    else:
        print_fields(rows)
