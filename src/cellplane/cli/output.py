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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    "QuietOpt",
    "age",
    "client_factory",
    "err_console",
    "error_detail",
    "escape",
    "fail",
    "is_json",
    "out_console",
    "print_fields",
    "print_id",
    "print_json",
    "print_list",
    "print_table",
    "problem_of",
    "read_stdin_secret",
    "reset_format",
    "say",
    "secret_once",
    "secret_to_stderr",
    "session",
    "show_or_json",
]


class OutputFormat(StrEnum):
    """How results are printed."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        callback=lambda value: _remember_format(value),
        help="table for people (tab-separated, never cut, when piped), wide (more columns: ids), "
        "json or yaml for scripts (the API objects; errors too, on stderr).",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only ids, one a line (for scripts).")
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


# The `-o` of the running command, recorded as its option is parsed (`_remember_format`), so that
# errors raised anywhere in it print in that format too.
_format = OutputFormat.table


def _remember_format(value: OutputFormat | str | None) -> OutputFormat:
    global _format
    try:
        _format = OutputFormat(value) if value is not None else OutputFormat.table
    except ValueError:
        _format = OutputFormat.table
    return _format


def reset_format() -> None:
    """Forget the last command's `-o` (the root command calls it before each command)."""
    _remember_format(None)


def _current_format() -> OutputFormat:
    return _format


def fail(
    title: str, detail: str | None = None, code: int = 1, *, problem: dict[str, Any] | None = None
) -> NoReturn:
    """Print an error on stderr and exit: in red for people; with `-o json|yaml` the problem
    document (RFC 9457: title, status, detail, errors) in that format, so scripts can parse it."""
    fmt = _current_format()
    if fmt in (OutputFormat.json, OutputFormat.yaml):
        doc = problem or {"title": title, "detail": detail}
        sys.stderr.write(_dump(doc, fmt))
        sys.stderr.flush()
        raise typer.Exit(code)
    err_console.print(f"[bold red]Error:[/] [red]{escape(title)}[/]")
    if detail:
        err_console.print(f"[red]{escape(detail)}[/]")
    raise typer.Exit(code)


def escape(text: str) -> str:
    """Escape Rich markup in text that came from the server or the user."""
    from rich import markup

    return markup.escape(text)


def problem_of(exc: Any) -> dict[str, Any]:
    """The problem document of an SDK error, as the server sent it (fields it had)."""
    doc: dict[str, Any] = {"type": exc.type, "title": exc.title, "status": exc.status}
    doc["detail"] = exc.detail
    if exc.errors:
        doc["errors"] = exc.errors
    return {k: v for k, v in doc.items() if v is not None}


def error_detail(exc: Any) -> str | None:
    """What went wrong, said once: the server's `detail` (which already names each field of a
    422), else its per-field `errors`."""
    if exc.detail:
        return str(exc.detail)
    lines = [f"{e.get('field', '?')}: {e.get('message', '')}" for e in exc.errors]
    return "\n".join(lines) or None


@contextmanager
def session() -> Iterator[Client]:
    """An API client for one command; API errors print (once) and exit 1."""
    from cellplane.client import CellplaneError

    try:
        with client_factory() as client:
            yield client
    except CellplaneError as exc:
        title = exc.title if exc.status is None else f"{exc.title} ({exc.status})"
        fail(title, error_detail(exc), problem=problem_of(exc))


def _dump(data: Any, fmt: OutputFormat) -> str:
    if fmt is OutputFormat.yaml:
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def print_json(data: Any) -> None:
    """Print API objects on stdout, unstyled so that it stays parseable: JSON, or YAML when the
    command runs with `-o yaml`."""
    fmt = _current_format()
    sys.stdout.write(_dump(data, fmt if fmt is OutputFormat.yaml else OutputFormat.json))
    sys.stdout.flush()


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """Print rows on stdout; None shows as '-'. On a terminal a Rich table (long values fold,
    never cut); piped, plain tab-separated lines with a header, every value in full."""
    if not out_console.is_terminal:
        if title:
            sys.stdout.write(f"# {title}\n")
        for row in [columns, *rows]:
            sys.stdout.write("\t".join(" ".join(_cell(v).split()) for v in row) + "\n")
        sys.stdout.flush()
        return
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(_cell(v)) for v in row))
    out_console.print(table)


def print_list(
    out: OutputFormat,
    items: Sequence[Mapping[str, Any]],
    quiet: bool,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    key: str = "id",
    wide_only: Iterable[str] = (),
) -> None:
    """How every `ls` prints: ids only with `-q`; the objects with `-o json|yaml`; else a table
    whose `wide_only` columns show with `-o wide`."""
    if quiet:
        for item in items:
            sys.stdout.write(f"{item.get(key)}\n")
        sys.stdout.flush()
        return
    if is_json(out):
        print_json(list(items))
        return
    hidden = set() if out is OutputFormat.wide else set(wide_only)
    keep = [i for i, c in enumerate(columns) if c not in hidden]
    print_table([columns[i] for i in keep], ([row[i] for i in keep] for row in rows))


def print_id(quiet: bool, data: Mapping[str, Any], key: str = "id") -> bool:
    """`-q` of a create command: print the new object's id alone; True when it did."""
    if quiet:
        sys.stdout.write(f"{data.get(key)}\n")
        sys.stdout.flush()
    return quiet


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
    """A format for scripts (json or yaml): print the API objects."""
    return out in (OutputFormat.json, OutputFormat.yaml)


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


def secret_to_stderr(label: str, secret: str) -> None:
    """A generated secret when stdout carries only an id (`-q`): shown once, on stderr."""
    err_console.print(
        f"[yellow]Warning:[/] the {escape(label)} is shown only now: {escape(secret)}"
    )


def print_fields(rows: Iterable[tuple[str, Any]]) -> None:
    """A FIELD/VALUE table: how `show` commands print one object."""
    print_table(["FIELD", "VALUE"], rows)


def show_or_json(data: Any, out: OutputFormat, rows: Iterable[tuple[str, Any]]) -> None:
    """The object as JSON with `-o json`, else its rows as a FIELD/VALUE table."""
    if is_json(out):
        print_json(data)
    else:
        print_fields(rows)
