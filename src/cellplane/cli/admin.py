"""`cellplane admin backup|restore|leader`: the server's state and its replicas.

Both work on the data directory's files (as `cellplane up` does), not through the API: SQLite's
online backup API gives a consistent copy beside a running server, and a restore must run while
no server does. The work is `cellplane.backup`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cellplane.cli import output

__all__ = ["app"]

app = typer.Typer(
    help="Operate a deployment: its data directory (on the server's machine) and its replicas.",
    no_args_is_help=True,
)

PASSPHRASE_ENV = "CELLPLANE_BACKUP_PASSPHRASE"
MIN_PASSPHRASE = 8

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="CELLPLANE_DATA_DIR", help="Where state lives."),
]
PassphraseFile = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help=f"A file whose first line is the passphrase (else ${PASSPHRASE_ENV}, else a prompt).",
    ),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"Error: {message}", fg="red", err=True)
    return typer.Exit(code)


def _passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"cannot read the passphrase file {path}: {e}", 2) from e
        value = lines[0] if lines else ""
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        value = typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm)
    else:
        raise _fail(
            f"a passphrase is needed: --passphrase-file, ${PASSPHRASE_ENV}, or run in a terminal",
            2,
        )
    if confirm and len(value) < MIN_PASSPHRASE:
        raise _fail(f"the passphrase is shorter than {MIN_PASSPHRASE} characters", 2)
    if not value:
        raise _fail("the passphrase is empty", 2)
    return value


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GiB"


@app.command("backup")
def backup_cmd(
    out: Annotated[Path, typer.Option("--out", help="The backup file to write (must not exist).")],
    data_dir: DataDir = None,
    database_url: Annotated[
        str | None, typer.Option(envvar="CELLPLANE_DATABASE_URL", help="SQLAlchemy URL.")
    ] = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Write an encrypted, consistent backup of the server's state (database, CA and signing
    keys, TLS files, join token, images); the server may keep running."""
    from cellplane.backup.archive import BackupError, backup
    from cellplane.paths import default_data_dir

    directory = (data_dir or default_data_dir()).absolute()
    secret = _passphrase(passphrase_file, confirm=True)
    try:
        summary = backup(directory, out.absolute(), secret, database_url=database_url)
    except BackupError as e:
        raise _fail(str(e)) from e
    typer.echo(
        f"Backed up {directory} to {summary.path}: {summary.files} files, "
        f"{_size(summary.bytes)}, database revision {summary.db_revision or '?'}, "
        f"at {summary.created_at}. Keep the passphrase: without it the file cannot be restored."
    )


@app.command("restore")
def restore_cmd(
    source: Annotated[Path, typer.Option("--from", help="The backup file to restore.")],
    data_dir: DataDir = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace a non-empty server state (kept aside as server.replaced-*)."
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Restore a backup into the data directory; then start the server (stop it first)."""
    from cellplane.backup.archive import BackupError, restore
    from cellplane.paths import default_data_dir

    directory = (data_dir or default_data_dir()).absolute()
    if not source.is_file():
        raise _fail(f"{source} is not a file", 2)
    secret = _passphrase(passphrase_file, confirm=False)
    try:
        summary, moved = restore(source.absolute(), directory, secret, force=force)
    except BackupError as e:
        raise _fail(str(e)) from e
    if moved:
        typer.echo(f"The previous server state was moved to {moved}.")
    typer.echo(
        f"Restored {summary.files} files from {source} (made at {summary.created_at}, database "
        f"revision {summary.db_revision or '?'}) into {directory / 'server'}. Start the server; "
        "agents reconnect and adopt the cells still running."
    )


@app.command("leader")
def leader_cmd(out: output.OutputOpt = output.OutputFormat.table) -> None:
    """Show which server replica runs the controllers, since when, and its epoch."""
    with output.session() as client:
        data = client.leader()
    rows = [
        ("answered by", data.get("replica")),
        ("leader", data.get("leader") or "none (no replica leads yet)"),
        ("answering replica leads", "yes" if data.get("leading") else "no"),
        ("epoch", data.get("epoch")),
        ("since", data.get("since")),
        ("database", data.get("database")),
    ]
    output.show_or_json(data, out, rows)
